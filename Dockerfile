# syntax=docker/dockerfile:1.7
# One image for the three Common Ground services; the command picks the service:
#   docker run … commonground python -m services.enrolment   (HTTP 8001)
#   docker run … commonground python -m services.matching    (HTTP 8002)
#   docker run … commonground python -m services.reporting   (HTTP 8003)
# Configuration comes only from the environment (see deploy/README.md).

ARG PYTHON_IMAGE=python:3.11-slim
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---- build: resolve the locked dependencies into /app/.venv -----------------------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first (their layer is reused until uv.lock changes) …
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-project
# … then the project itself, installed as a wheel (the runtime image needs no sources).
COPY pyproject.toml uv.lock README.md ./
COPY shared ./shared
COPY services ./services
COPY devstack ./devstack
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# ---- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="commonground" \
      org.opencontainers.image.description="Common Ground services: enrolment, matching, reporting"
ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} app \
 && useradd --system --uid ${APP_UID} --gid app --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin app
COPY --from=build --chown=root:root /app/.venv /app/.venv
COPY --chown=root:root deploy/docker/healthcheck.py /app/healthcheck.py
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
# Numeric uid so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8001 8002 8003
# Works for whichever service runs: the script reads the service from PID 1's command line
# and its port from that service's own settings.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]
CMD ["python", "-m", "services.enrolment"]
