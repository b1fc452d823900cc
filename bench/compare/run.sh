#!/usr/bin/env bash
# Measures panva/oidc-provider with the broker's own load driver (bench/loadgen) on this machine, so its
# figures sit beside the broker's in docs/benchmarks.md. Starts oidc-provider (bench/compare/oidc-provider,
# in-memory adapter), checks it answers client_credentials, runs loadgen RUNS times per scenario, prints
# loadgen's Markdown rows and the median run (by ops/s), and stops the server.
#
#   bench/compare/run.sh                      # client-credentials and refresh, 3 x 10 s at concurrency 32
#
# Environment (all optional):
#   LOADGEN        loadgen binary              (default: target/release/loadgen of this repository)
#   NODE           node binary                 (default: node; bench/compare/node22 ships Node 22 LTS)
#   OIDC_PROVIDER  v9 (current 9.x) or v8 (8.8.1, the last whose runtime check accepts Node 20); default v9
#   SCENARIOS      loadgen scenarios, space-separated (default: "client-credentials refresh"; "login" works too)
#   RUNS           runs per scenario (default 3)       DURATION     seconds per run (default 10)
#   CONCURRENCY    virtual users (default 32)          PORT         loopback port (default 8090)
#   OUT            directory for raw loadgen output (default: a fresh temporary directory)
#   ID_TOKEN_ALG   RS256 (default, as the broker) or ES256: oidc-provider signs an ID token on every refresh
#
# The refresh and login scenarios use loadgen's login walker: oidc-provider's interaction route (see
# server.mjs) stands in for the broker's mock VNeID and logs `login_hint` in at once.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LOADGEN="${LOADGEN:-$ROOT/target/release/loadgen}"
NODE="${NODE:-node}"
OIDC_PROVIDER="${OIDC_PROVIDER:-v9}"
SCENARIOS="${SCENARIOS:-client-credentials refresh}"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-32}"
PORT="${PORT:-8090}"
OUT="${OUT:-$(mktemp -d /tmp/compare-oidc-provider.XXXXXX)}"
ISSUER="http://127.0.0.1:$PORT"
CLIENT_SECRET="$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
export CLIENT_SECRET

die() { echo "run.sh: $*" >&2; exit 1; }

[[ -x "$LOADGEN" ]] || die "no loadgen at $LOADGEN (build it: cargo build --release -p loadgen, or set LOADGEN)"
command -v "$NODE" >/dev/null || die "no node at $NODE"
command -v curl >/dev/null || die "curl is needed"
mkdir -p "$OUT"

if [[ ! -d "$HERE/oidc-provider/node_modules/oidc-provider" ]]; then
  (cd "$HERE/oidc-provider" && npm ci --no-audit --no-fund >&2)
fi

if curl -s -o /dev/null --max-time 1 "$ISSUER/"; then
  die "something already listens on $ISSUER"
fi

SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
}
trap stop_server EXIT

(cd "$HERE/oidc-provider" && exec env NODE_ENV=production PORT="$PORT" OIDC_PROVIDER="$OIDC_PROVIDER" \
  "$NODE" server.mjs) >"$OUT/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 150); do
  curl -sf -o /dev/null --max-time 1 "$ISSUER/.well-known/openid-configuration" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log" >&2; die "oidc-provider exited"; }
  sleep 0.2
done
curl -sf -o /dev/null --max-time 1 "$ISSUER/.well-known/openid-configuration" \
  || { cat "$OUT/server.log" >&2; die "oidc-provider did not come up on $ISSUER"; }
LABEL="$(grep -o 'oidc-provider [0-9.]* on Node v[0-9.]*' "$OUT/server.log" | head -n1)"
echo "run.sh: $LABEL, pid $SERVER_PID, raw output in $OUT" >&2

status="$(curl -s -o "$OUT/cc-check.json" -w '%{http_code}' -u "bench:$CLIENT_SECRET" \
  -d grant_type=client_credentials "$ISSUER/token")"
[[ "$status" == 200 ]] || { cat "$OUT/cc-check.json" >&2; die "client_credentials answered $status"; }

HEADER="| server | scenario | concurrency | ops/s | p50 ms | p99 ms | errors | server CPU ms/op | db CPU ms/op |
|---|---|---:|---:|---:|---:|---:|---:|---:|"
rows=()
medians=()
for scenario in $SCENARIOS; do
  mine=()
  for run in $(seq "$RUNS"); do
    log="$OUT/$scenario-$run.txt"
    echo "run.sh: $scenario run $run/$RUNS" >&2
    "$LOADGEN" --issuer "$ISSUER" --client-id bench --client-secret="$CLIENT_SECRET" \
      --scenario "$scenario" --duration "$DURATION" --concurrency "$CONCURRENCY" \
      --server-pid "$SERVER_PID" --markdown >"$log" 2>"$OUT/$scenario-$run.err" \
      || { cat "$log" "$OUT/$scenario-$run.err" >&2; die "loadgen failed ($scenario run $run)"; }
    sed -n '/^scenario /,/^$/p' "$log" >&2
    row="$(grep "^| $scenario |" "$log" | tail -n1)"
    [[ -n "$row" ]] || die "no Markdown row in $log"
    mine+=("| $LABEL (run $run) |${row#|}")
  done
  rows+=("${mine[@]}")
  # The median run by ops/s (the 4th column of the rows above).
  median="$(printf '%s\n' "${mine[@]}" | sort -t'|' -k5,5n | sed -n "$(( (RUNS + 1) / 2 ))p")"
  medians+=("${median/ (run / (median: run }")
done

echo
echo "All runs:"
echo "$HEADER"
printf '%s\n' "${rows[@]}"
echo
echo "Median of $RUNS runs (by ops/s):"
echo "$HEADER"
printf '%s\n' "${medians[@]}"
