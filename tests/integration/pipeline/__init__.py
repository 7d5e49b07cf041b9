"""The worker end to end over the session's Tansu and redis-server.

Two workers serve the whole package (started together, stopped together): ``nocaps`` runs the
default model without daily caps (where keyed and unkeyed input must give the same state) and
``default`` runs the shipped model. Tests keep apart by customer ids (and, for NPS, by days).
Expected results come from the pure core: the same events folded through ``scoring.apply``.
"""
