"""Which failures are worth waiting for, in one place.

A batch that fails for a reason the world will cure (Redis restarting or failing over,
the broker unreachable, a timeout, Redis out of memory under ``noeviction``, credentials
an operator must fix) is retried in place, with jittered backoff, and counted by
**cause**. Anything else cannot be cured by retrying: the worker isolates the message or
customer it belongs to and dead-letters it with a reason code, so the partition moves on.

>>> import redis.exceptions as r
>>> transient_cause(r.BusyLoadingError("Redis is loading the dataset in memory"))
'loading'
>>> transient_cause(r.ResponseError("BUSY Redis is busy running a script"))
'busy'
>>> transient_cause(r.ResponseError("WRONGTYPE Operation against a key")) is None
True
"""

from __future__ import annotations

import redis.exceptions as rx
from aiokafka import errors as kx

from stream_app.errors import StreamAppError

#: Causes of a retry, the label of ``engagement_retries_total``.
CAUSES = (
    "connection",  # Redis or the broker unreachable, a connection dropped
    "timeout",  # a request took longer than its timeout
    "loading",  # Redis loading its dataset after a restart
    "busy",  # Redis busy running a long script
    "failover",  # a replica (READONLY), a primary down, a cluster slot moving
    "oom",  # Redis out of memory under maxmemory-policy noeviction
    "auth",  # credentials or ACL permissions refused: an operator must fix them
    "kafka",  # a broker error that is not about the message itself
    "conflict",  # fenced writes kept losing to another writer (a rebalance)
)

#: First word of a Redis error reply -> cause (replies inside pipelines and scripts too).
_REDIS_CODES = {
    "LOADING": "loading",
    "BUSY": "busy",
    "READONLY": "failover",
    "MASTERDOWN": "failover",
    "CLUSTERDOWN": "failover",
    "TRYAGAIN": "failover",
    "NOREPLICAS": "failover",
    "OOM": "oom",
    "NOAUTH": "auth",
    "NOPERM": "auth",
    "WRONGPASS": "auth",
}

#: Broker errors about the message itself: retrying the same message cannot cure them.
_KAFKA_MESSAGE = (
    kx.MessageSizeTooLargeError,
    kx.RecordTooLargeError,
    kx.RecordListTooLargeError,
    kx.CorruptRecordException,
    kx.InvalidTimestampError,
    kx.UnsupportedCodecError,
)

_KAFKA_AUTH = (
    kx.TopicAuthorizationFailedError,
    kx.GroupAuthorizationFailedError,
    kx.ClusterAuthorizationFailedError,
    kx.SaslAuthenticationFailed,
    kx.AuthenticationFailedError,
)


class CorruptState(StreamAppError):
    """A customer's stored record does not decode (permanent: dead-letter, leave it)."""


def redis_code(exc: BaseException) -> str:
    """The error code of a Redis error reply (its first word), or ``""``.

    >>> redis_code(rx.ResponseError("WRONGTYPE Operation against a key"))
    'WRONGTYPE'
    """
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code:
        return code
    head = str(exc).split(" ", 1)[0]
    return head if head.isupper() and head.isalpha() else ""


def transient_cause(exc: BaseException) -> str | None:
    """The cause label when retrying can cure ``exc``; None when it cannot.

    >>> transient_cause(ConnectionResetError())
    'connection'
    >>> transient_cause(ValueError("bad record")) is None
    True
    """
    declared = getattr(type(exc), "retry_cause", None)  # an error of ours that says so
    if isinstance(declared, str):
        return declared
    if isinstance(exc, rx.AuthenticationError | rx.NoPermissionError):
        return "auth"
    if isinstance(exc, rx.BusyLoadingError):
        return "loading"
    if isinstance(exc, rx.TimeoutError | TimeoutError | kx.KafkaTimeoutError):
        return "timeout"
    if isinstance(exc, rx.ConnectionError | kx.KafkaConnectionError | OSError):
        return "connection"
    if isinstance(exc, rx.OutOfMemoryError):
        return "oom"
    if isinstance(exc, rx.ReadOnlyError | rx.ClusterDownError | rx.TryAgainError):
        return "failover"
    if isinstance(exc, rx.ClusterError | rx.RedisClusterException):
        return "failover"  # slots moving, a node unreachable
    if isinstance(exc, rx.ResponseError):
        return _REDIS_CODES.get(redis_code(exc))
    if isinstance(exc, _KAFKA_AUTH):
        return "auth"
    if isinstance(exc, kx.KafkaError):  # the broker's state, unless the message is at fault
        return None if isinstance(exc, _KAFKA_MESSAGE) else "kafka"
    return None


def describe(exc: BaseException, limit: int = 300) -> str:
    """``Type: message``, cut to ``limit`` characters (for logs and dead letters).

    >>> describe(ValueError("x" * 500), limit=20)
    'ValueError: xxxxx...'
    """
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
