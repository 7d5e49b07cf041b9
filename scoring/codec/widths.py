"""Field widths shared by both binary formats: 1, 2, 4 or 8 bytes, as a code 0-3.

>>> unsigned_code(255), unsigned_code(256), signed_code(-128), signed_code(127), never(0)
(0, 1, 1, 0, -128)
"""

from __future__ import annotations

__all__ = ["SIGNED", "UNSIGNED", "never", "signed_code", "unsigned_code"]

#: :mod:`struct` codes of the unsigned and signed widths 1, 2, 4, 8 (code 0-3).
UNSIGNED = "BHIQ"
SIGNED = "bhiq"


def unsigned_code(n: int) -> int:
    """The width code of the smallest unsigned field holding ``n`` (>= 0)."""
    return 0 if n < 0x100 else 1 if n < 0x10000 else 2 if n < 0x1_0000_0000 else 3


def signed_code(n: int) -> int:
    """The width code of the smallest signed field holding ``n``, its lowest value kept free."""
    m = n if n >= 0 else -n
    return 0 if m < 0x80 else 1 if m < 0x8000 else 2 if m < 0x8000_0000 else 3


def never(code: int) -> int:
    """The "never" sentinel of a signed width: its lowest value, which no offset takes."""
    return -(1 << (8 << code) - 1)
