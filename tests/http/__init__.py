"""The HTTP side's pure parts: token checks, request validation, the metrics exposition,
the dashboard's files, daily NPS and timelines, and ``docs/openapi.yaml`` against the routes
and error codes in the code.

No services: the :class:`ReadApi` here sits on a Redis client pointed at a closed port, so
any request that got past validation would fail with a connection error (which some tests
use to show that a request *was* accepted). What needs Redis is in
``tests/integration/api/``.
"""
