#!/bin/sh
# The image's entrypoint (exec form in the Dockerfile, so this shell is PID 1 until it execs).
#
#   (no arguments) or `serve [OPTIONS]`: migrate unless MIGRATE_ON_START=false, then become the
#       server: `python -m app serve` on 0.0.0.0:${PORT:-8000}, WEB_CONCURRENCY workers.
#   anything else: run it instead (`alembic upgrade head` for the compose migrate service and
#       the Kubernetes Job, `python -m app create-admin NAME`, a shell for debugging).
set -eu

if [ "$#" -gt 0 ] && [ "$1" != "serve" ]; then
    exec "$@"
fi
if [ "$#" -gt 0 ]; then shift; fi

case "${MIGRATE_ON_START:-true}" in
    false | 0 | no | off)
        echo "MIGRATE_ON_START=${MIGRATE_ON_START}: not migrating (a separate job does it)" ;;
    *)
        # Replicas starting together take turns: alembic/env.py holds a PostgreSQL advisory
        # lock, so one migrates and the others find nothing left to do. A failure stops here
        # (set -e): the server never starts on a schema it does not match.
        alembic upgrade head ;;
esac

# exec: the server replaces this shell, so SIGTERM reaches it directly and it drains in-flight
# requests for SHUTDOWN_DRAIN_SECONDS.
exec python -m app serve --host 0.0.0.0 --port "${PORT:-8000}" "$@"
