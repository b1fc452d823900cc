#!/usr/bin/env bash
# Browser test: Debian's Chromium (/usr/bin/chromium, `apt-get install chromium`), driven by
# playwright-core, clicks through the demo app, the broker's login page in both languages, the
# mock VNeID, the logout confirmation, the error page and the roles' registration and approval
# pages (tests/browser/browser.test.mjs).
#
# Usage (from anywhere; builds nothing — run `cargo build -p broker` first):
#   bash tests/browser/run.sh
#
# It starts `broker dev` (broker + mock VNeID + demo app, SQLite and keys in a temporary data
# directory, the demo app registered as client demo-rp) on free loopback ports, and hands the
# tests the operator token that `broker dev` prints (OPERATOR_TOKEN, for the admin API).
#
# Environment:
#   BROKER_BIN      the broker binary (default target/debug/broker, relative to the repo root)
#   CHROMIUM_BIN    the browser (default /usr/bin/chromium; never a downloaded browser build)
#   SCREENSHOT_DIR  where a failing test saves its page as PNG (default tests/browser/failures,
#                   ignored by git; emptied at the start of each run)
#   NODE_TEST_ARGS  extra arguments for `node --test` (e.g. --test-name-pattern=logout)
# Other BROKER_* variables of the calling shell are cleared so that they cannot change the setup.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)
TEST_DIR="$ROOT/tests/browser"

BROKER_BIN=${BROKER_BIN:-target/debug/broker}
case "$BROKER_BIN" in /*) ;; *) BROKER_BIN="$ROOT/$BROKER_BIN" ;; esac
# The path stays a shell variable: the broker would read an exported BROKER_BIN as a setting.
export -n BROKER_BIN
CHROMIUM_BIN=${CHROMIUM_BIN:-/usr/bin/chromium}
SCREENSHOT_DIR=${SCREENSHOT_DIR:-$TEST_DIR/failures}
if [[ ! -x "$BROKER_BIN" ]]; then
    echo "run.sh: broker binary $BROKER_BIN not found or not executable (cargo build -p broker)" >&2
    exit 2
fi
if [[ ! -x "$CHROMIUM_BIN" ]]; then
    echo "run.sh: Chromium not found at $CHROMIUM_BIN (apt-get install -y chromium)" >&2
    exit 2
fi
for tool in python3 curl node npm; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 2; }
done

for var in $(compgen -e | grep '^BROKER_' || true); do
    case "$var" in
        BROKER_BIN | BROKER_LOG) ;;
        *) unset "$var" ;;
    esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/broker-browser-test.XXXXXX")
DEV_PID=""

# The working directory is the repository root (see the cd above).
# shellcheck source=tests/lib.sh
source tests/lib.sh

cleanup() {
    local rc=$?
    set +e
    stop "$DEV_PID"
    if [[ $rc -ne 0 ]]; then
        if [[ -s "$WORK/dev.log" ]]; then
            echo "----- last 80 lines of the broker dev log ($WORK/dev.log) -----" >&2
            tail -n 80 "$WORK/dev.log" >&2
            echo "----- end of the broker dev log -----" >&2
        fi
        if compgen -G "$SCREENSHOT_DIR/*.png" >/dev/null; then
            log "screenshots of the failing pages: $(echo "$SCREENSHOT_DIR"/*.png)"
        fi
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Three free loopback ports, held open together so that they differ.
read -r BROKER_PORT MOCK_PORT DEMO_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)
BROKER_URL="http://127.0.0.1:$BROKER_PORT"
MOCK_URL="http://127.0.0.1:$MOCK_PORT"
DEMO_URL="http://127.0.0.1:$DEMO_PORT"
log "broker $BROKER_URL, mock VNeID $MOCK_URL, demo app $DEMO_URL; browser $CHROMIUM_BIN"

NO_COLOR=1 "$BROKER_BIN" dev --data-dir "$WORK/data" \
    --port "$BROKER_PORT" --mock-port "$MOCK_PORT" --demo-port "$DEMO_PORT" \
    >"$WORK/dev.log" 2>&1 &
DEV_PID=$!
wait_for "$BROKER_URL/healthz" "$DEV_PID" "broker"
wait_for "$MOCK_URL/.well-known/openid-configuration" "$DEV_PID" "mock VNeID"
wait_for "$DEMO_URL/" "$DEV_PID" "demo app"
# The operator token `broker dev` made for this run (its "admin token" line), for the admin API.
OPERATOR_TOKEN=$(sed -n 's/^ *admin token \([^ ]*\) .*/\1/p' "$WORK/dev.log" | head -n1)
if [[ -z "$OPERATOR_TOKEN" ]]; then
    log "no \"admin token\" line in the broker dev log"
    exit 1
fi

if [[ ! -d "$TEST_DIR/node_modules/playwright-core" ]]; then
    (cd "$TEST_DIR" && npm ci --no-audit --no-fund)
fi
rm -rf "$SCREENSHOT_DIR"

set +e
(
    cd "$TEST_DIR"
    export BROKER_URL MOCK_URL DEMO_URL OPERATOR_TOKEN CHROMIUM_BIN SCREENSHOT_DIR
    # playwright-core must never fetch a browser of its own.
    export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
    # shellcheck disable=SC2086
    node --test --test-reporter=spec ${NODE_TEST_ARGS:-} browser.test.mjs
)
STATUS=$?
set -e
if [[ $STATUS -eq 0 ]]; then
    log "PASS (Chromium: $("$CHROMIUM_BIN" --version 2>/dev/null | head -n1))"
else
    log "FAIL: node --test exited with $STATUS"
fi
exit "$STATUS"
