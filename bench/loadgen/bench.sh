#!/usr/bin/env bash
# Benchmark: starts the release broker (+ the mock VNeID) on one storage pair and runs the load
# driver against it. Not part of CI. Usage, from the repo root:
#   cargo build --release -p broker -p loadgen
#   bash bench/loadgen/bench.sh sqlite   [duration] [concurrency]
#   bash bench/loadgen/bench.sh postgres [duration] [concurrency]   # PostgreSQL + Redis on loopback
#   bash bench/loadgen/bench.sh postgres 10 32 linking   # the plain login and each linking branch
#   bash bench/loadgen/bench.sh postgres 10 8 backchannel-logout   # logout → logout token latency
#   bash bench/loadgen/bench.sh postgres 10 32 mobile-login         # every login evicts a device
#   ONE_MOBILE_DEVICE=false bash bench/loadgen/bench.sh postgres 10 32 mobile-login   # rule off
#   bash bench/loadgen/bench.sh postgres 10 8 device-eviction       # B's tokens → A's logout token
#   bash bench/loadgen/bench.sh postgres 10 16 role-events           # role SETs/s, approval → SET
# The fourth argument is loadgen's --scenario (default: all). ONE_MOBILE_DEVICE (default true)
# sets the broker's [devices] one_mobile_device, to measure what the rule costs; MOBILE_DEVICES
# (default 2) is mobile-login's devices per citizen (1: the same device logs in again).
# RATE (default 100) is role-event-latency's approvals per second (loadgen --rate); SET_ALG
# (default RS256) the role-events subscriber's signing algorithm for its SETs (loadgen --set-alg).
# HANG_ONE_IN (default 0: never) makes one mock token call in N hang for a minute: the logins/s
# while VNeID sometimes does not answer (compare with the healthy figure; pair it with e.g.
# BENCH_BROKER_ENV="BROKER_UPSTREAM__TIMEOUT_SECS=2" so that a hung call ends at the timeout).
# BENCH_BROKER_ENV adds settings to the broker's environment, e.g. "BROKER_DISPATCH__ENABLED=false".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PAIR=${1:-postgres}
DURATION=${2:-10}
CONCURRENCY=${3:-32}
SCENARIO=${4:-all}
ONE_MOBILE_DEVICE=${ONE_MOBILE_DEVICE:-true}
MOBILE_DEVICES=${MOBILE_DEVICES:-2}
RATE=${RATE:-100}
SET_ALG=${SET_ALG:-RS256}
HANG_ONE_IN=${HANG_ONE_IN:-0}
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
PORTS=$(python3 -c 'import socket
a=socket.socket(); a.bind(("127.0.0.1",0)); b=socket.socket(); b.bind(("127.0.0.1",0))
print(a.getsockname()[1], b.getsockname()[1])')
read -r BPORT MPORT <<<"$PORTS"
SECRET=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
ADMIN=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
"$BIN/broker" keys generate-master > "$WORK/master.key"
DB=""
cleanup() {
  if grep -qE "ERROR|WARN" "$WORK/broker.log" 2>/dev/null; then
    echo "--- broker warnings and errors (first 20):"; grep -E "ERROR|WARN" "$WORK/broker.log" | head -20
  fi
  kill "${BROKER_PID:-}" "${MOCK_PID:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "$DB" ]; then psql postgres://postgres@127.0.0.1:5432/test -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

env -i PATH="$PATH" BROKER_ENVIRONMENT=development "$BIN/broker" mock-vneid --port "$MPORT" \
  --client-id broker --client-secret "$SECRET" --redirect-uri "http://127.0.0.1:$BPORT/callback/vneid" \
  --hang-one-in "$HANG_ONE_IN" > "$WORK/mock.log" 2>&1 &
MOCK_PID=$!

common=(BROKER_ENVIRONMENT=development BROKER_ISSUER="http://127.0.0.1:$BPORT" BROKER_HTTP__PORT="$BPORT"
  BROKER_KEYS__MASTER_KEY_FILE="$WORK/master.key" BROKER_ADMIN__TOKEN="$ADMIN"
  BROKER_UPSTREAM__ISSUER="http://127.0.0.1:$MPORT" BROKER_UPSTREAM__CLIENT_SECRET="$SECRET"
  BROKER_LOG=warn,broker::otp::dev=info BROKER_RATE_LIMIT__ENABLED=false BROKER_SMS__GATEWAY=dev
  BROKER_DEVICES__ONE_MOBILE_DEVICE="$ONE_MOBILE_DEVICE"
  BROKER_OTP__PER_PHONE_PER_15_MIN=0 BROKER_OTP__PER_PHONE_PER_DAY=0 BROKER_OTP__PER_ACCOUNT_PER_DAY=0
  BROKER_OTP__PER_ADDRESS_PER_HOUR=0 BROKER_OTP__PER_PREFIX_PER_DAY=0 BROKER_OTP__GLOBAL_PER_DAY=0)
read -r -a more <<<"${BENCH_BROKER_ENV:-}"
common+=("${more[@]}")
if [ "$PAIR" = postgres ]; then
  DB="bench_$(date +%s)"
  psql postgres://postgres@127.0.0.1:5432/test -qc "CREATE DATABASE $DB" >/dev/null
  storage=(BROKER_DATABASE__URL="postgres://postgres@127.0.0.1:5432/$DB" BROKER_DATABASE__MAX_CONNECTIONS=32
    BROKER_KEYS__STORE=sql BROKER_SESSIONS__BACKEND=redis BROKER_SESSIONS__REDIS_URL=redis://127.0.0.1:6379
    BROKER_SESSIONS__KEY_PREFIX="bench-$DB:")
else
  storage=(BROKER_DATABASE__URL="sqlite://$WORK/broker.db?mode=rwc" BROKER_KEYS__STORE=file
    BROKER_KEYS__DIR="$WORK/keys" BROKER_SESSIONS__BACKEND=memory)
fi
# The synthetic legacy accounts: the login scenario's citizen (C01) links to hers by ID number.
# Exit status 3 says the file's 20 malformed rows were refused, as they must be.
env -i PATH="$PATH" "${common[@]}" "${storage[@]}" "$BIN/broker" import legacy-accounts fixtures/legacy-accounts.csv \
  > "$WORK/import.log" 2>&1 || [ $? -eq 3 ] || { cat "$WORK/import.log"; exit 1; }
# The linking scenarios' fresh identities (loadgen's scenarios/first_login.rs ranges): records
# with the ID number, records with only the phone; the new citizens' numbers have none. The
# mobile scenarios' citizens link by ID number.
case "$SCENARIO" in
  all|client-credentials|refresh|backchannel-logout) specs="" ;;
  mobile-login|device-eviction|role-event*) specs="id:0-20000" ;;
  *) specs="id:0-20000 phone:200000-220000" ;;
esac
for spec in $specs; do
  env -i PATH="$PATH" BROKER_ENVIRONMENT=development "$BIN/broker" mock-vneid --emit-legacy "$spec" > "$WORK/legacy.csv"
  env -i PATH="$PATH" "${common[@]}" "${storage[@]}" "$BIN/broker" import legacy-accounts "$WORK/legacy.csv" \
    > "$WORK/import-synthetic.log" 2>&1 || { cat "$WORK/import-synthetic.log"; exit 1; }
done
# The role scenarios: the agency tree and the staff roster (docs/directory.md).
case "$SCENARIO" in
  role-event*)
    for what in org-units staff; do
      env -i PATH="$PATH" "${common[@]}" "${storage[@]}" "$BIN/broker" import "$what" "fixtures/$what.csv" \
        > "$WORK/import-$what.log" 2>&1 || { cat "$WORK/import-$what.log"; exit 1; }
    done ;;
esac
env -i PATH="$PATH" "${common[@]}" "${storage[@]}" "$BIN/broker" serve > "$WORK/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$BPORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$BPORT/healthz" >/dev/null || { cat "$WORK/broker.log"; exit 1; }

extra=()
[ "$PAIR" = postgres ] && extra+=(--postgres)
"$BIN/loadgen" --issuer "http://127.0.0.1:$BPORT" --admin-token="$ADMIN" --scenario "$SCENARIO" \
  --duration "$DURATION" --concurrency "$CONCURRENCY" --server-pid "$BROKER_PID" --mobile-devices "$MOBILE_DEVICES" --rate "$RATE" --set-alg "$SET_ALG" \
  "${extra[@]}" --sms-log "$WORK/broker.log" --markdown
