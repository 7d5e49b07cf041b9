"""Kafka TLS and SASL from settings, for faust (the worker) and aiokafka (the CLI).

``ENGAGEMENT_KAFKA_SECURITY_PROTOCOL`` picks PLAINTEXT, SSL, SASL_PLAINTEXT or
SASL_SSL; SASL takes a mechanism (PLAIN, SCRAM-SHA-256/512), user and password;
TLS takes an optional CA file and client certificate. Secrets never reach logs:
:meth:`Settings.redacted` masks the password.
"""

from __future__ import annotations

import ssl
from typing import Any

from stream_app.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying TLS context for SSL / SASL_SSL (None for plaintext)."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return context


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients.

    >>> aiokafka_config(Settings())
    {'security_protocol': 'PLAINTEXT'}
    >>> cfg = aiokafka_config(Settings(kafka_security_protocol="SASL_PLAINTEXT",
    ...     kafka_sasl_mechanism="SCRAM-SHA-256", kafka_sasl_username="u",
    ...     kafka_sasl_password="p"))
    >>> cfg["sasl_mechanism"], cfg["sasl_plain_username"]
    ('SCRAM-SHA-256', 'u')
    """
    config: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        config["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = settings.kafka_sasl_password
    return config


def faust_credentials(settings: Settings) -> Any:
    """faust ``broker_credentials`` for these settings (None for plaintext)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )
