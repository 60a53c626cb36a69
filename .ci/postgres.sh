#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the multi-worker tests (tests/test_postgres.py).
#
#   url=$(bash .ci/postgres.sh)      # start (or reuse) it; prints the URL on stdout, logs on stderr
#   bash .ci/postgres.sh stop        # stop it
#
# Idempotent: reuses a server already answering on the port and an existing data directory.
# Installs Debian's `postgresql` package when no server binaries exist (root only).
# The server listens on 127.0.0.1 only, with trust authentication: for tests, never for data.
# Settings: DPC_NAS_PG_PORT (default 54329), DPC_NAS_PG_DIR (default /tmp/dpc-nas-postgres).
# Exits non-zero (with the reason on stderr) when no server can be started.
set -euo pipefail

PORT="${DPC_NAS_PG_PORT:-54329}"
DIR="${DPC_NAS_PG_DIR:-/tmp/dpc-nas-postgres}"
DB=dpc_nas_test
URL="postgresql://postgres@127.0.0.1:${PORT}/${DB}"

log() { echo "postgres.sh: $*" >&2; }
find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true; }

BIN="$(find_bin)"
if [ -z "$BIN" ] && [ "${1:-}" != stop ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing PostgreSQL from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2 || { log "apt-get install postgresql failed"; exit 1; }
    BIN="$(find_bin)"
  fi
fi
[ -n "$BIN" ] || { log "no PostgreSQL server binaries (install Debian's postgresql package)"; exit 1; }

# The server refuses to run as root: run its commands as the `postgres` user then.
RUN=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  RUN=(runuser -u postgres --)
fi

if [ "${1:-}" = stop ]; then
  [ -f "$DIR/postmaster.pid" ] && "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >&2 || true
  exit 0
fi

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  if [ ! -f "$DIR/PG_VERSION" ]; then
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    chmod 700 "$DIR"
    "${RUN[@]}" "$BIN/initdb" -D "$DIR" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null 2>"$DIR.initdb.log" \
      || { log "initdb failed: $(tail -n 3 "$DIR.initdb.log" | tr '\n' ' ')"; exit 1; }
  fi
  "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DIR -c fsync=off" start >/dev/null \
    || { log "server did not start: $(tail -n 3 "$DIR/server.log" 2>/dev/null | tr '\n' ' ')"; exit 1; }
fi

if ! "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB" || { log "createdb $DB failed"; exit 1; }
fi
log "PostgreSQL $(basename "$(dirname "$BIN")") on 127.0.0.1:$PORT, data in $DIR"
echo "$URL"
