#!/usr/bin/env bash
# Real-client test: drives the broker with panva's `openid-client` (Node) through a full
# VNeID-federated login against the mock VNeID, then the token, userinfo, refresh, revocation
# and replay checks of tests/node/broker.test.mjs.
#
# Usage (from anywhere; builds nothing — run `cargo build -p broker` first):
#   bash tests/node/run.sh
#   BROKER_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
#   BROKER_TEST_REDIS_URL=redis://127.0.0.1:6379 bash tests/node/run.sh
#
# Environment:
#   BROKER_BIN                the broker binary (default target/debug/broker, relative to the repo root)
#   BROKER_TEST_DATABASE_URL  PostgreSQL server URL: a fresh database node_<random> is created on it
#                             for this run and dropped at exit (needs psql). Unset: a SQLite file.
#   BROKER_TEST_REDIS_URL     Redis URL for the session store, keys under node-<random>: (removed at
#                             exit when redis-cli is available). Unset: the in-process store.
#   NODE_TEST_ARGS            extra arguments for `node --test` (e.g. --test-name-pattern=...)
# Other BROKER_* variables of the calling shell are cleared so that they cannot change the setup.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)
NODE_DIR="$ROOT/tests/node"

BROKER_BIN=${BROKER_BIN:-target/debug/broker}
case "$BROKER_BIN" in /*) ;; *) BROKER_BIN="$ROOT/$BROKER_BIN" ;; esac
# The path stays a shell variable: the broker would read an exported BROKER_BIN as a setting.
export -n BROKER_BIN
if [[ ! -x "$BROKER_BIN" ]]; then
    echo "run.sh: broker binary $BROKER_BIN not found or not executable (cargo build -p broker)" >&2
    exit 2
fi
for tool in python3 curl node npm; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 2; }
done

# Keep only the variables this script understands; anything else BROKER_* would configure the broker.
for var in $(compgen -e | grep '^BROKER_' || true); do
    case "$var" in
        BROKER_BIN | BROKER_LOG | BROKER_TEST_DATABASE_URL | BROKER_TEST_REDIS_URL) ;;
        *) unset "$var" ;;
    esac
done

RUN_ID=$(python3 -c 'import secrets; print(secrets.token_hex(6))')
WORK=$(mktemp -d "${TMPDIR:-/tmp}/broker-node-test.XXXXXX")
BROKER_PID=""
MOCK_PID=""
PG_DB=""
PG_ADMIN_URL=""
REDIS_PREFIX=""

# The working directory is the repository root (see the cd above).
# shellcheck source=tests/lib.sh
source tests/lib.sh

cleanup() {
    local rc=$?
    set +e
    stop "$BROKER_PID"
    stop "$MOCK_PID"
    if [[ $rc -ne 0 ]]; then
        for f in broker mock; do
            if [[ -s "$WORK/$f.log" ]]; then
                echo "----- last 60 lines of the $f log ($WORK/$f.log) -----" >&2
                tail -n 60 "$WORK/$f.log" >&2
                echo "----- end of the $f log -----" >&2
            fi
        done
    fi
    if [[ -n "$PG_DB" ]]; then
        psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null \
            || log "could not drop database $PG_DB"
    fi
    if [[ -n "$REDIS_PREFIX" ]] && command -v redis-cli >/dev/null; then
        redis-cli -u "$BROKER_TEST_REDIS_URL" --scan --pattern "${REDIS_PREFIX}*" 2>/dev/null \
            | xargs -r -n 100 redis-cli -u "$BROKER_TEST_REDIS_URL" DEL >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two free loopback ports, held open together so that they differ.
read -r BROKER_PORT MOCK_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)
ISSUER="http://127.0.0.1:$BROKER_PORT"
MOCK_URL="http://127.0.0.1:$MOCK_PORT"
UPSTREAM_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')

BROKER_ENVIRONMENT=development "$BROKER_BIN" keys generate-master >"$WORK/master.key"
chmod 600 "$WORK/master.key"

# Storage.
if [[ -n "${BROKER_TEST_DATABASE_URL:-}" ]]; then
    command -v psql >/dev/null || { log "psql is required with BROKER_TEST_DATABASE_URL"; exit 2; }
    PG_ADMIN_URL=$BROKER_TEST_DATABASE_URL
    PG_DB="node_$RUN_ID"
    DATABASE_URL=$(python3 - "$PG_ADMIN_URL" "$PG_DB" <<'EOF'
import sys
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1])
print(urlunsplit((u.scheme, u.netloc, "/" + sys.argv[2], u.query, u.fragment)))
EOF
)
    psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
    STORAGE="PostgreSQL database $PG_DB"
else
    DATABASE_URL="sqlite://$WORK/broker.db?mode=rwc"
    STORAGE="SQLite $WORK/broker.db"
fi
if [[ -n "${BROKER_TEST_REDIS_URL:-}" ]]; then
    REDIS_PREFIX="node-$RUN_ID:"
    SESSIONS="Redis, prefix $REDIS_PREFIX"
else
    SESSIONS="memory"
fi
log "broker $ISSUER, mock VNeID $MOCK_URL; storage: $STORAGE; sessions: $SESSIONS"

# The mock VNeID.
NO_COLOR=1 BROKER_ENVIRONMENT=development "$BROKER_BIN" mock-vneid \
    --port "$MOCK_PORT" --client-id broker --client-secret="$UPSTREAM_SECRET" \
    --redirect-uri "$ISSUER/callback/vneid" >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
wait_for "$MOCK_URL/.well-known/openid-configuration" "$MOCK_PID" "mock VNeID"

# The legacy accounts of the synthetic data: test citizen C01 links to hers by ID number, so
# her login goes straight back to the app. The file's 20 malformed rows make the import exit
# with ROWS_REJECTED (3); anything else is a failure.
set +e
BROKER_ENVIRONMENT=development BROKER_DATABASE__URL="$DATABASE_URL" \
    BROKER_KEYS__MASTER_KEY_FILE="$WORK/master.key" \
    "$BROKER_BIN" import legacy-accounts fixtures/legacy-accounts.csv >"$WORK/import.log" 2>&1
IMPORTED=$?
set -e
if [[ $IMPORTED -ne 0 && $IMPORTED -ne 3 ]]; then
    cat "$WORK/import.log" >&2
    log "the legacy import failed ($IMPORTED)"
    exit 1
fi

# The broker.
(
    export NO_COLOR=1 # plain log files
    export BROKER_ENVIRONMENT=development
    export BROKER_ISSUER="$ISSUER"
    export BROKER_HTTP__PORT="$BROKER_PORT"
    export BROKER_KEYS__MASTER_KEY_FILE="$WORK/master.key"
    export BROKER_KEYS__STORE=sql
    export BROKER_ADMIN__TOKEN="$ADMIN_TOKEN"
    export BROKER_UPSTREAM__ISSUER="$MOCK_URL"
    export BROKER_UPSTREAM__CLIENT_SECRET="$UPSTREAM_SECRET"
    export BROKER_LOGIN__AUTO_REDIRECT=true
    export BROKER_DATABASE__URL="$DATABASE_URL"
    if [[ -n "$REDIS_PREFIX" ]]; then
        export BROKER_SESSIONS__BACKEND=redis
        export BROKER_SESSIONS__REDIS_URL="$BROKER_TEST_REDIS_URL"
        export BROKER_SESSIONS__KEY_PREFIX="$REDIS_PREFIX"
    else
        export BROKER_SESSIONS__BACKEND=memory
    fi
    exec "$BROKER_BIN" serve
) >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
wait_for "$ISSUER/healthz" "$BROKER_PID" "broker"

# A confidential client, registered through the admin API.
REDIRECT_URI="http://127.0.0.1:9/cb"
REGISTRATION=$(cat <<EOF
{"client_name":"node openid-client","redirect_uris":["$REDIRECT_URI"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"client_secret_basic","scope":"openid profile"}
EOF
)
# The bootstrap token only creates operators; an operator's token registers the client.
HTTP_STATUS=$(curl -sS -o "$WORK/operator.json" -w '%{http_code}' --max-time 10 \
    -X POST "$ISSUER/admin/operators" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    --data '{"name":"node-test"}')
if [[ "$HTTP_STATUS" != 201 ]]; then
    log "POST /admin/operators answered $HTTP_STATUS, expected 201: $(cat "$WORK/operator.json")"
    exit 1
fi
OPERATOR_TOKEN=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["token"])' "$WORK/operator.json")
HTTP_STATUS=$(curl -sS -o "$WORK/client.json" -w '%{http_code}' --max-time 10 \
    -X POST "$ISSUER/admin/clients" \
    -H "Authorization: Bearer $OPERATOR_TOKEN" -H 'Content-Type: application/json' \
    --data "$REGISTRATION")
if [[ "$HTTP_STATUS" != 201 ]]; then
    log "POST /admin/clients answered $HTTP_STATUS, expected 201: $(cat "$WORK/client.json")"
    exit 1
fi
read -r CLIENT_ID CLIENT_SECRET < <(python3 - "$WORK/client.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
print(c["client_id"], c["client_secret"])
EOF
)
log "registered client $CLIENT_ID"

if [[ ! -d "$NODE_DIR/node_modules" ]]; then
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund)
fi

set +e
(
    cd "$NODE_DIR"
    export ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI
    # shellcheck disable=SC2086
    node --test --test-reporter=spec ${NODE_TEST_ARGS:-} broker.test.mjs
)
STATUS=$?
set -e
if [[ $STATUS -eq 0 ]]; then
    log "PASS ($STORAGE; sessions: $SESSIONS)"
else
    log "FAIL: node --test exited with $STATUS ($STORAGE; sessions: $SESSIONS)"
fi
exit "$STATUS"
