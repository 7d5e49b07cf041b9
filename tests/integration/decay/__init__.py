"""Decay-driven changes end to end (issue 4), over the session's Tansu and redis-server.

A test model with a 5-second half-life makes decay visible in seconds: a hot customer left
alone becomes warm, then cold, with no new event. Expected changes come from the pure core:
the same events folded through ``scoring.apply``, then ``scoring.advance`` crossing by
crossing; ids and contents must match exactly, and crossing times are also checked against
the closed form. A thread tails the output topic, stamping each message with the wall clock
when it arrived, to measure how long after its crossing a decay change is published.
"""
