"""The admin endpoints' logic: erase and merge requests (``views.py`` routes to it).

``POST /v1/customers/{id}/erase`` and ``POST /v1/customers/{id}/merge`` (body
``{"into": "<survivor>"}``) send a request to the input topic, keyed by the customer,
and answer 202 with it: the workers carry it out in order with the customer's events.
They need a token of ``ENGAGEMENT_ADMIN_TOKENS``; without any configured they are off
(403), whatever the read API's tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from scoring import InvalidEvent, validate_customer_id
from stream_app.http.api import Answer, error
from stream_app.lifecycle_requests import describe, new_request, request_message
from stream_app.worker.ports import Publisher


class AdminApi:
    """Answers for the admin endpoints."""

    def __init__(self, publisher: Publisher, input_topic: str) -> None:
        self.publisher = publisher
        self.input_topic = input_topic

    async def erase(self, customer_id: str) -> Answer:
        return await self._send("erase", customer_id, None)

    async def merge(self, customer_id: str, body: object) -> Answer:
        into = body.get("into") if isinstance(body, Mapping) else None
        if not isinstance(into, str):
            return error(400, "bad_body", 'body: must be a JSON object {"into": "<customer id>"}')
        return await self._send("merge", customer_id, into)

    async def _send(
        self, kind: Literal["erase", "merge"], customer_id: str, into: str | None
    ) -> Answer:
        try:
            validate_customer_id(customer_id)
        except InvalidEvent as exc:
            return error(400, "bad_customer_id", exc.detail)
        try:
            request = new_request(kind, customer_id, into)
        except InvalidEvent as exc:  # (only ``into`` is left to be wrong)
            return error(400, "bad_body", exc.detail)
        await self.publisher.publish([request_message(self.input_topic, request)])
        return 202, describe(request, self.input_topic)
