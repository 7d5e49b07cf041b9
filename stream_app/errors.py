"""The root of every error ``stream_app`` raises on purpose.

An error the user can act on (a setting, an unreachable broker or Redis, a topic that
does not fit) derives from :class:`StreamAppError`; the command line reports it in one
line and exits with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class StreamAppError(Exception):
    """A failure of ``stream_app`` the user can act on; the message says what to do."""
