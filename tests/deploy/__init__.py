"""Deployment artefacts, checked without Docker or a broker (pure, fast).

* ``docker-compose.yml`` validates against the Compose specification's JSON Schema
  (``tests/data/compose-spec.json``, a copy of ``shared/data/compose-spec.json``) and its
  internal references hold: ``depends_on`` targets, named volumes, the worker's broker and
  Redis addresses, ``ENGAGEMENT_*`` names (real :class:`stream_app.settings.Settings`
  fields), CLI commands (parsed by the real argument parser), no fixed host port on the
  scalable worker, KRaft with replication factors 1, Redis with AOF.
* ``Dockerfile``: slim Python base, non-root user, the console script as entrypoint,
  ``worker`` by default, everything it copies kept by ``.dockerignore``.
* ``docs/asyncapi.yaml`` validates against the AsyncAPI 3.0.0 JSON Schema
  (``tests/data/asyncapi-3.0.0.schema.json``: ``schemas/3.0.0-without-$id.json`` of the
  npm package ``@asyncapi/specs`` 6.11.1, Apache-2.0), names the topics the settings
  default to, and its payload schemas (``docs/schemas/*.json``, referenced) accept what the
  app produces and reject what it dead-letters, exactly where a JSON Schema can tell.
"""
