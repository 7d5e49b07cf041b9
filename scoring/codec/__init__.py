"""The byte formats of the core: one for a customer's state (:mod:`.state`), one for
its explanation (:mod:`.explain`).

Each starts with its version byte (3 for both); a decoder refuses any other first byte
with :class:`~scoring.errors.UnknownFormat`, and bytes of its own format that are not
whole or do not fit the model with :class:`~scoring.errors.InvalidState`.
"""
