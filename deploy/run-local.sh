#!/usr/bin/env bash
# piapi-mcp hosted for a team without containers: PostgreSQL from the installed binaries (Debian's
# postgresql package) in a fresh folder, three stateless replicas on loopback ports 8001-8003, and HAProxy
# (apt-get install haproxy) with deploy/haproxy.cfg on 127.0.0.1:8080. Runs in the foreground; Ctrl-C
# stops everything it started.
#
#   cp deploy/env.example deploy/.env && $EDITOR deploy/.env    # key, token, webhook secret
#   deploy/run-local.sh
#
# Settings (environment or deploy/.env): PIAPI_API_KEY, PIAPI_MCP_AUTH_TOKEN (required),
# PIAPI_WEBHOOK_SECRET and PIAPI_PUBLIC_URL (webhooks; optional), PIAPI_LEDGER_URL (an existing database:
# then none is started), PIAPI_BASE_URL (e.g. a simulator: piapi-mcp simulator --port 8765 --webhooks),
# PIAPI_MCP (the piapi-mcp command, default: piapi-mcp on PATH), RUN_DIR (default: a new temporary folder),
# LB_PORT (8080), REPLICA_PORTS ("8001 8002 8003"), PG_PORT (5433).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -f "$here/.env" ]]; then set -a; source "$here/.env"; set +a; fi
: "${PIAPI_API_KEY:?set PIAPI_API_KEY (deploy/.env)}"
: "${PIAPI_MCP_AUTH_TOKEN:?set PIAPI_MCP_AUTH_TOKEN (deploy/.env)}"
PIAPI_MCP="${PIAPI_MCP:-piapi-mcp}"
LB_PORT="${LB_PORT:-8080}"
REPLICA_PORTS=(${REPLICA_PORTS:-8001 8002 8003})
PG_PORT="${PG_PORT:-5433}"
RUN_DIR="${RUN_DIR:-$(mktemp -d -t piapi-cluster-XXXXXX)}"
mkdir -p "$RUN_DIR"
pids=()
pg_started=""

as_postgres() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait "${pids[@]}" 2>/dev/null || true
    if [[ -n "$pg_started" ]]; then as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/pg" -m fast -w stop >/dev/null || true; fi
    echo "stopped; logs in $RUN_DIR" >&2
}
trap cleanup EXIT INT TERM

if [[ -z "${PIAPI_LEDGER_URL:-}" ]]; then
    PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
    [[ -x "$PG_BIN/initdb" ]] || { echo "no PostgreSQL in $PG_BIN (apt-get install postgresql)" >&2; exit 1; }
    if [[ $(id -u) == 0 ]]; then chown postgres: "$RUN_DIR"; chmod 755 "$RUN_DIR"; fi
    # Loopback only and trusted, for a try-out: give a real deployment a password (PIAPI_LEDGER_URL).
    as_postgres "$PG_BIN/initdb" -D "$RUN_DIR/pg" -U postgres --auth=trust -E UTF8 >"$RUN_DIR/initdb.log"
    as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/pg" -l "$RUN_DIR/postgres.log" -w start \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $RUN_DIR -c max_connections=200" >/dev/null
    pg_started=1
    PIAPI_LEDGER_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "PostgreSQL on 127.0.0.1:$PG_PORT (data in $RUN_DIR/pg)" >&2
fi
export PIAPI_LEDGER_URL PIAPI_API_KEY PIAPI_MCP_AUTH_TOKEN

i=0
for port in "${REPLICA_PORTS[@]}"; do
    i=$((i + 1))
    PIAPI_STATE_DIR="$RUN_DIR/replica$i/state" PIAPI_OUTPUT_DIR="$RUN_DIR/replica$i/outputs" \
        $PIAPI_MCP --transport streamable-http --stateless --host 127.0.0.1 --port "$port" \
        >"$RUN_DIR/replica$i.log" 2>&1 &
    pids+=($!)
    export "PIAPI_REPLICA_$i=127.0.0.1:$port"
    echo "replica$i on 127.0.0.1:$port (log $RUN_DIR/replica$i.log)" >&2
done

export PIAPI_LB_BIND="127.0.0.1:$LB_PORT"
haproxy -W -db -f "$here/haproxy.cfg" >"$RUN_DIR/haproxy.log" 2>&1 &
pids+=($!)
echo "HAProxy on http://127.0.0.1:$LB_PORT/mcp (log $RUN_DIR/haproxy.log); Ctrl-C stops all" >&2
wait -n "${pids[@]}" || true
echo "a process ended; stopping the rest" >&2
