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
    WEB_CONCURRENCY=2 \
    PORT=8000

# The code stays root-owned, so the service cannot rewrite itself.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY requirements.txt alembic.ini ./
COPY alembic ./alembic
COPY app ./app
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint
# Not COPY --chmod: that needs BuildKit, and the classic builder must work too.
RUN chmod 0755 /usr/local/bin/docker-entrypoint

USER 10001:10001

EXPOSE 8000

# Liveness only (never the database): the slim image has no curl, so Python asks. urlopen raises
# on a refused connection or a non-2xx status, which makes the check fail.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8000'), timeout=3)"]

# Exec form: the entrypoint migrates (advisory lock: safe from several replicas at once; skipped
# with MIGRATE_ON_START=false) and then execs `python -m app serve` on $PORT with WEB_CONCURRENCY
# workers, so the server is PID 1, receives SIGTERM and drains (SHUTDOWN_DRAIN_SECONDS). Proxy
# headers are trusted only from FORWARDED_ALLOW_IPS (default: localhost). Any other command
# (`alembic upgrade head`, `python -m app create-admin NAME`) runs instead of the server.
ENTRYPOINT ["docker-entrypoint"]
CMD ["serve"]
