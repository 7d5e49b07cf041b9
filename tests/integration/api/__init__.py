"""The HTTP read API, health checks and metrics of a running worker, over real Tansu and Redis.

Three workers serve the package (started together, stopped together), each with its web
server on a free loopback port:

* ``api``: no auth, ``ENGAGEMENT_EXPLAIN_EVENTS=3``; the /v1/ endpoints, /metrics.
* ``secured``: ``ENGAGEMENT_API_TOKENS=t1,t2`` and ``ENGAGEMENT_OPS_TOKENS``; auth, and the
  NPS windows (nothing else sends it NPS answers, so its per-day counts are all ours).
* ``ready``: its own redis-server, stopped and restarted under it for /readyz.

Expected values come from the pure core: the same events folded through ``scoring.apply``.
Every response body is also validated against its schema in ``docs/openapi.yaml``.
"""
