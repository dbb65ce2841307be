# syntax=docker/dockerfile:1
# Production image for Preflight. Build: docker build -t preflight .  (or: make up)

# ---- builder: build the project into a self-contained virtualenv at /opt/venv
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# README.md* so a missing README (pyproject names it) does not break the build
COPY pyproject.toml README.md* ./
COPY app ./app
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install /wheels/*.whl

# ---- runtime: the venv, the migrations, a non-root user
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin preflight
COPY --from=builder /opt/venv /opt/venv
# `preflight migrate` runs alembic with /app as the working directory.
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
USER preflight
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
CMD ["preflight", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
