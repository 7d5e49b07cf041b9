"""Erase and merge requests as the CLI and the HTTP API send them (a fresh request id,
stamped now), keyed by the customer they are about so that they land on its partition."""

from __future__ import annotations

import time
import uuid
from typing import Literal

from scoring.lifecycle import Request, encode_request, make_request
from stream_app.messages import OutMessage


def new_request(kind: Literal["erase", "merge"], customer_id: str, into: str | None) -> Request:
    """A request with a fresh id, stamped now (:class:`scoring.InvalidEvent` if an id
    is not a valid customer id, or a merge names the same customer twice)."""
    return make_request(
        kind, customer_id, request_id=uuid.uuid4().hex, ts_ms=int(time.time() * 1000), into=into
    )


def request_message(topic: str, request: Request) -> OutMessage:
    """A request as a message to the input topic ``topic``, keyed by its customer."""
    return OutMessage(topic, request.customer_id.encode(), encode_request(request))


def describe(request: Request, topic: str) -> dict[str, object]:
    """What was sent, as JSON-ready data."""
    out: dict[str, object] = {
        "request_id": request.request_id,
        "type": f"engagement.customer.{request.kind}",
        "customer_id": request.customer_id,
    }
    if request.into is not None:
        out["into"] = request.into
    out["topic"] = topic
    return out
