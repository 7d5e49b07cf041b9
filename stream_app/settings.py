"""Typed, frozen settings read from ``ENGAGEMENT_*`` environment variables.

Every variable is documented in ``docs/configuration.md``; keep the two in step
(a test compares them).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stream_app.errors import StreamAppError

PREFIX = "ENGAGEMENT_"


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
LOG_FORMATS = ("text", "json")
API_AUTH = ("token", "none")
IDEMPOTENCE = ("auto", "on", "off")
WRITE_FORMATS = ("current", "previous")
#: URL query parameters whose values are secrets (masked in logs).
SECRET_QUERY = ("password", "pass", "pwd", "secret", "token", "key", "sasl_password")


class SettingsError(StreamAppError, ValueError):
    """An environment variable holds a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The worker's configuration; build it with :meth:`from_env`."""

    kafka_brokers: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""  # empty: the system trust store
    kafka_ssl_certfile: str = ""  # client certificate (mutual TLS), optional
    kafka_ssl_keyfile: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    model_file: str = ""  # empty: the shipped default model
    app_id: str = "engagement-scorer"
    web_bind: str = "127.0.0.1"
    web_port: int = 6066
    web_enabled: bool = True
    input_topic: str = "engagement.interactions"
    output_topic: str = "engagement.segment-changes"
    dlq_topic: str = "engagement.interactions.dlq"
    by_customer_topic: str = ""  # empty: "<input_topic>.by-customer"
    partitions: int = 8
    topic_replication_factor: int = 1
    topic_retention_ms: int = 7 * 24 * 3600 * 1000
    key_prefix: str = "es"
    dedup_memory: int = 16
    explain_events: int = 10
    explain_full_ids: bool = False  # keep explained events' ids as sent, not fingerprints
    write_format: str = "current"  # current | previous: write what the previous release reads
    max_future_seconds: float = 300.0
    max_event_age_days: float = 400.0  # older events are dead-lettered; 0: no limit
    nps_retention_days: int = 400  # NPS day counters older than this are deleted
    batch_size: int = 500
    batch_window_ms: int = 20
    fetch_max_wait_ms: int = 100
    faust_monitor: bool = False  # faust's Monitor sensor: per-event bookkeeping, off by default
    faust_eager_delivery: bool = True  # deliver fetched messages without wait_first's tasks
    faust_batch_input: bool = True  # whole fetches to the agent (false: faust's stream path)
    gc_freeze: bool = True  # freeze start-up objects, so full collections stay short
    retry_max_backoff_s: float = 5.0
    stall_seconds: float = 120.0  # /healthz fails after this long without progress (lag/retry)
    max_message_bytes: int = 1_000_000  # the largest message the broker takes
    kafka_idempotence: str = "auto"  # auto | on | off: the idempotent producer
    redis_require_noeviction: bool = True  # refuse to start unless maxmemory-policy noeviction
    decay_tick_ms: int = 500
    decay_sweep_limit: int = 1000
    due_horizon_seconds: float = 86_400.0  # a due entry may be a bound this far ahead
    log_level: str = "info"
    log_format: str = "text"  # text | json (one object per line), the CLI's and the worker's
    api_tokens: str = ""  # comma-separated bearer tokens for /v1/; empty: no auth
    ops_tokens: str = ""  # comma-separated tokens for /readyz and /metrics; empty: open
    api_auth: str = "token"  # token | none: "none" allows a non-loopback bind without tokens
    admin_tokens: str = ""  # comma-separated tokens for the erase/merge endpoints; empty: off
    suppression_secret: str = ""  # HMAC key naming erased customers in the suppression list
    suppression_days: float = 30.0  # how long an erased customer's later events are dropped
    alias_days: float = 30.0  # how long a merged-away customer's events go to the survivor
    ready_max_lag: int = 10_000
    data_dir: str = ""  # empty: a directory under the system temp dir

    def __post_init__(self) -> None:
        if not self.by_customer_topic:  # the internal topic of input re-keyed by customer
            object.__setattr__(self, "by_customer_topic", f"{self.input_topic}.by-customer")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every field from ``ENGAGEMENT_<FIELD>``; unset means the default."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = PREFIX + f.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(name, raw, f.default)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Reject values the worker cannot run with, naming the variable."""
        positive = {
            "partitions": self.partitions,
            "dedup_memory": self.dedup_memory,
            "batch_size": self.batch_size,
            "decay_tick_ms": self.decay_tick_ms,
            "decay_sweep_limit": self.decay_sweep_limit,
            "topic_retention_ms": self.topic_retention_ms,
            "topic_replication_factor": self.topic_replication_factor,
        }
        for name, value in positive.items():
            if value <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()}: must be positive, got {value}")
        if not 0 < self.web_port < 65536:
            raise SettingsError(f"{PREFIX}WEB_PORT: must be a TCP port, got {self.web_port}")
        if self.explain_events < 0:
            raise SettingsError(f"{PREFIX}EXPLAIN_EVENTS: must be >= 0, got {self.explain_events}")
        if self.batch_window_ms < 0:
            raise SettingsError(f"{PREFIX}BATCH_WINDOW_MS: must be >= 0")
        if not 0 <= self.fetch_max_wait_ms <= 60_000:
            raise SettingsError(f"{PREFIX}FETCH_MAX_WAIT_MS: must be between 0 and 60000")
        if self.due_horizon_seconds < 0:
            raise SettingsError(f"{PREFIX}DUE_HORIZON_SECONDS: must be >= 0")
        if self.max_future_seconds < 0:
            raise SettingsError(f"{PREFIX}MAX_FUTURE_SECONDS: must be >= 0")
        self._check_lifecycle()
        if not self.retry_max_backoff_s > 0:
            raise SettingsError(f"{PREFIX}RETRY_MAX_BACKOFF_S: must be > 0")
        self._check_limits()
        self._check_kafka()
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"{PREFIX}LOG_FORMAT: one of {', '.join(LOG_FORMATS)}")
        if not self.kafka_brokers.strip():
            raise SettingsError(f"{PREFIX}KAFKA_BROKERS: must name at least one host:port")

    def _check_limits(self) -> None:
        if self.max_event_age_days < 0:
            raise SettingsError(f"{PREFIX}MAX_EVENT_AGE_DAYS: must be >= 0 (0: no limit)")
        if self.nps_retention_days <= 0:
            raise SettingsError(f"{PREFIX}NPS_RETENTION_DAYS: must be positive")
        if not self.stall_seconds > 0:
            raise SettingsError(f"{PREFIX}STALL_SECONDS: must be > 0")
        if self.max_message_bytes < 16_384:
            raise SettingsError(f"{PREFIX}MAX_MESSAGE_BYTES: must be at least 16384")
        if self.api_auth not in API_AUTH:
            raise SettingsError(f"{PREFIX}API_AUTH: one of {', '.join(API_AUTH)}")
        if self.kafka_idempotence not in IDEMPOTENCE:
            raise SettingsError(f"{PREFIX}KAFKA_IDEMPOTENCE: one of {', '.join(IDEMPOTENCE)}")
        if self.write_format not in WRITE_FORMATS:
            raise SettingsError(f"{PREFIX}WRITE_FORMAT: one of {', '.join(WRITE_FORMATS)}")

    def check_exposure(self) -> None:
        """Refuse to serve the HTTP API beyond loopback without tokens.

        The read API hands out customer ids and scores, ``/metrics`` and ``/readyz`` the
        worker's state: on any address other than loopback each needs its tokens, unless
        ``ENGAGEMENT_API_AUTH=none`` says the network in front takes care of it.
        """
        if not self.web_enabled or self.api_auth == "none" or is_loopback(self.web_bind):
            return
        missing = [
            f"{PREFIX}{name.upper()}"
            for name in ("api_tokens", "ops_tokens")
            if not getattr(self, f"{name[:-1]}_list")
        ]
        if missing:
            raise SettingsError(
                f"{PREFIX}WEB_BIND={self.web_bind} serves the API beyond loopback, but "
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} empty: set "
                f"the tokens, or {PREFIX}API_AUTH=none if something in front authenticates"
            )

    @property
    def max_event_age_ms(self) -> int | None:
        """``max_event_age_days`` in milliseconds (None: no limit)."""
        return int(self.max_event_age_days * 86_400_000) if self.max_event_age_days else None

    def _check_lifecycle(self) -> None:
        for name in ("suppression_days", "alias_days"):
            if not 0 < getattr(self, name) <= 36_500:
                raise SettingsError(f"{PREFIX}{name.upper()}: must be > 0 and at most 36500")

    def _check_kafka(self) -> None:
        if self.kafka_security_protocol not in KAFKA_PROTOCOLS:
            raise SettingsError(
                f"{PREFIX}KAFKA_SECURITY_PROTOCOL: one of {', '.join(KAFKA_PROTOCOLS)}"
            )
        if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise SettingsError(
                f"{PREFIX}KAFKA_SASL_MECHANISM: one of {', '.join(SASL_MECHANISMS)}"
            )
        if self.kafka_security_protocol.startswith("SASL") and not self.kafka_sasl_username:
            raise SettingsError(f"{PREFIX}KAFKA_SASL_USERNAME: required with SASL")

    @property
    def api_token_list(self) -> list[str]:
        """``api_tokens`` split; empty means the /v1/ API needs no token."""
        return [t.strip() for t in self.api_tokens.split(",") if t.strip()]

    @property
    def ops_token_list(self) -> list[str]:
        """``ops_tokens`` split; empty means /readyz and /metrics are open."""
        return [t.strip() for t in self.ops_tokens.split(",") if t.strip()]

    @property
    def admin_token_list(self) -> list[str]:
        """``admin_tokens`` split; empty means the erase and merge endpoints are off."""
        return [t.strip() for t in self.admin_tokens.split(",") if t.strip()]

    @property
    def broker_list(self) -> list[str]:
        """``kafka_brokers`` split into ``host:port`` strings."""
        return [b.strip() for b in self.kafka_brokers.split(",") if b.strip()]

    @property
    def faust_broker(self) -> str:
        """The broker URL list in faust's ``kafka://`` form."""
        return ";".join(f"kafka://{b}" for b in self.broker_list)

    @property
    def model_path(self) -> Path:
        """The scoring model file in force."""
        if self.model_file:
            return Path(self.model_file)
        from scoring.model import default_model_path

        return default_model_path()

    def redacted(self) -> dict[str, object]:
        """Settings as a dict with secrets masked, for logs: tokens, passwords, and in URLs
        the user info and secret query parameters (``?password=...``).

        >>> s = Settings(redis_url="rediss://u:pw@h:6380/0?ssl_ca_certs=/ca&password=pw2",
        ...              api_tokens="t1,t2", kafka_sasl_password="p")
        >>> r = s.redacted()
        >>> r["redis_url"], r["api_tokens"], r["kafka_sasl_password"]
        ('rediss://***@h:6380/0?ssl_ca_certs=/ca&password=***', '***', '***')
        """
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if (f.name.endswith(("_tokens", "_password", "_secret"))) and value:
                value = "***"
            elif isinstance(value, str) and "://" in value:
                value = mask_url(value)
            out[f.name] = value
        return out


def mask_url(url: str) -> str:
    """``url`` with its user info and secret query parameters masked.

    >>> mask_url("redis://:s3cret@redis:6379/0")
    'redis://***@redis:6379/0'
    >>> mask_url("redis://redis:6379/0?password=s3cret&db=1")
    'redis://redis:6379/0?password=***&db=1'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_QUERY for k, _ in pairs):
            masked = [(k, "***" if k.lower() in SECRET_QUERY else v) for k, v in pairs]
            query = urlencode(masked, safe="/*:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback("10.0.0.5"), is_loopback("worker")
    (False, False, False)
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _convert(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            low = raw.strip().lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        kind = type(default).__name__
        raise SettingsError(f"{name}: expected {kind}, got {raw!r}") from None
    return raw
