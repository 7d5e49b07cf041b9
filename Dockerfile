# syntax=docker/dockerfile:1
# The engagement scorer worker image: `docker build -t engagement-scorer .`
# Runs `engagement-scorer worker` by default, configured by ENGAGEMENT_* variables
# (docs/configuration.md); any other subcommand works too, e.g.
#   docker run --rm engagement-scorer check-model /app/models/custom.toml
# docker-compose.yml builds and runs it next to Kafka and Redis.

# ---- build: a wheel of every dependency, then of the project (no compiler in the final image).
# The scoring core is compiled with mypyc (setup.py); SCORING_BUILD=mypyc makes a failed
# compile fail the build instead of falling back to pure Python.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 SCORING_BUILD=mypyc
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies first, from pyproject.toml alone: this layer is rebuilt only when the
# dependencies change, not at every change of the code. (Runtime dependencies only: the
# `demo` extra - a local broker binary and the terminal view - stays out of the image.)
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > requirements.txt \
    && pip wheel --wheel-dir /wheels -r requirements.txt
COPY setup.py README.md ./
COPY scoring ./scoring
COPY stream_app ./stream_app
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---- runtime (refuses to build if any module of the scoring core would load as pure Python)
FROM python:3.11-slim
# The web server listens on every address of the container; so the worker refuses to start
# unless ENGAGEMENT_API_TOKENS and ENGAGEMENT_OPS_TOKENS are given (from the environment or
# the orchestrator's secrets), or ENGAGEMENT_API_AUTH=none says that something in front
# authenticates.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    ENGAGEMENT_WEB_BIND=0.0.0.0 \
    ENGAGEMENT_DATA_DIR=/var/lib/engagement-scorer
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels engagement-scorer \
    && python -c "import importlib, pkgutil, sys, scoring; \
pure = [m.name for m in pkgutil.walk_packages(scoring.__path__, 'scoring.') \
        if importlib.import_module(m.name).__file__.endswith('.py')]; \
sys.exit(f'scoring is pure Python: {pure}' if pure or scoring.__file__.endswith('.py') else 0)" \
    && groupadd --system --gid 10001 scorer \
    && useradd --system --uid 10001 --gid scorer --no-create-home \
       --home-dir /var/lib/engagement-scorer --shell /usr/sbin/nologin scorer \
    && install -d -o scorer -g scorer -m 0750 /var/lib/engagement-scorer
WORKDIR /var/lib/engagement-scorer
USER 10001:10001

# faust's web server (ENGAGEMENT_WEB_PORT); the same port in every replica, so
# `docker compose up --scale worker=N` needs no host port per worker.
EXPOSE 6066

# Liveness: the worker's own /healthz (served by faust's web server).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
  CMD python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ENGAGEMENT_WEB_PORT', '6066'), timeout=2)"

# SIGTERM lets faust finish the batch in hand, commit and leave the consumer group.
STOPSIGNAL SIGTERM
ENTRYPOINT ["engagement-scorer"]
CMD ["worker"]
