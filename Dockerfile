# Build the virtualenv in one stage and copy only it into the runtime stage: no pip cache,
# no build tooling in the final image.
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH" \
    WEB_CONCURRENCY=2

# The code stays root-owned, so the service cannot rewrite itself.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY requirements.txt alembic.ini ./
COPY alembic ./alembic
COPY app ./app

USER app

EXPOSE 8000

# Migrate, then replace the shell with the server so it receives SIGTERM directly and drains
# in-flight requests (SHUTDOWN_DRAIN_SECONDS). The worker count comes from WEB_CONCURRENCY; proxy
# headers are trusted only from FORWARDED_ALLOW_IPS (default: localhost).
CMD ["sh", "-c", "alembic upgrade head && exec python -m app serve --host 0.0.0.0 --port 8000"]
