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
#   bash bench/loadgen/bench.sh postgres 30 64 role-event-drain      # the dispatcher alone: SETs/s
# The fourth argument is loadgen's --scenario (default: all). ONE_MOBILE_DEVICE (default true)
# sets the broker's [devices] one_mobile_device, to measure what the rule costs; MOBILE_DEVICES
# (default 2) is mobile-login's devices per citizen (1: the same device logs in again), and
# LOGINS_PER_DEVICE (default 1) its logins on one device before the next device's turn (20: one
# login in 20 changes phone and evicts, the others keep the slot).
# ROUNDS (default 1) runs the scenarios that many times in turn and reports each over all its
# rounds, with each round's CPU per operation against the first scenario's (the linking ratios:
# ROUNDS=10 bash bench/loadgen/bench.sh postgres 3 32 linking).
# RATE (default 100) is role-event-latency's approvals per second (loadgen --rate); SET_ALG
# (default RS256) the role-events subscriber's signing algorithm for its SETs (loadgen --set-alg).
# ID_TOKEN_ALG (default RS256) the driver's own client's ID-token algorithm (loadgen --id-token-alg).
# HANG_ONE_IN (default 0: never) makes one mock token call in N hang for a minute: the logins/s
# while VNeID sometimes does not answer (compare with the healthy figure; pair it with e.g.
# BENCH_BROKER_ENV="BROKER_UPSTREAM__TIMEOUT_SECS=2" so that a hung call ends at the timeout).
# VARIANT (default a) is the VNeID integration the mock plays and the broker is configured for
# (b: explicit endpoints, client_secret_post, LoA1/LoA2, userinfo; c: userinfo only, answers
# sealed to the broker's RSA key, SEAL_MODE ecb or cbc): the login figures per variant.
# BENCH_BROKER_ENV adds settings to the broker's environment, e.g. "BROKER_DISPATCH__ENABLED=false".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PAIR=${1:-postgres}
DURATION=${2:-10}
CONCURRENCY=${3:-32}
SCENARIO=${4:-all}
ONE_MOBILE_DEVICE=${ONE_MOBILE_DEVICE:-true}
MOBILE_DEVICES=${MOBILE_DEVICES:-2}
LOGINS_PER_DEVICE=${LOGINS_PER_DEVICE:-1}
ROUNDS=${ROUNDS:-1}
RATE=${RATE:-100}
SET_ALG=${SET_ALG:-RS256}
ID_TOKEN_ALG=${ID_TOKEN_ALG:-RS256}
HANG_ONE_IN=${HANG_ONE_IN:-0}
BIN=${CARGO_TARGET_DIR:-target}/release
# The broker's environment, the mock VNeID, the database and the legacy fixtures: broker-env.sh.
source bench/loadgen/broker-env.sh
trap broker_cleanup EXIT
broker_prepare "$PAIR"
# The linking scenarios' fresh identities (loadgen's scenarios/first_login.rs ranges): records
# with the ID number, records with only the phone; the new citizens' numbers have none. The
# mobile scenarios' citizens link by ID number.
case "$SCENARIO" in
  all|client-credentials|refresh|backchannel-logout) specs="" ;;
  mobile-login|device-eviction|role-event*) specs="id:0-50000" ;;
  *) specs="id:0-50000 phone:200000-250000" ;;
esac
for spec in $specs; do
  env -i PATH="$PATH" BROKER_ENVIRONMENT=development "$BIN/broker" mock-vneid --emit-legacy "$spec" > "$WORK/legacy.csv"
  broker_cmd import legacy-accounts "$WORK/legacy.csv" > "$WORK/import-synthetic.log" 2>&1 || { cat "$WORK/import-synthetic.log"; exit 1; }
done
# The role scenarios: the agency tree and the staff roster (docs/directory.md).
case "$SCENARIO" in
  role-event*)
    for what in org-units staff; do
      broker_cmd import "$what" "fixtures/$what.csv" > "$WORK/import-$what.log" 2>&1 || { cat "$WORK/import-$what.log"; exit 1; }
    done ;;
esac
# role-event-drain: the serving broker writes the events and delivers none; the driver then
# starts a second instance over the same database (another port) that delivers the backlog.
drain=()
if [ "$SCENARIO" = role-event-drain ]; then
  SERVE_ENV=(BROKER_DISPATCH__ENABLED=false)
  drainer=$(printf '%q ' env -i PATH="$PATH" "${common[@]}" "${storage[@]}" BROKER_HTTP__PORT="$DPORT" "$BIN/broker" serve)
  drain=(--drain-command "$drainer > $WORK/drainer.log 2>&1 & echo \$! | tee $WORK/drainer.pid")
fi
broker_serve

extra=()
[ "$PAIR" = postgres ] && extra+=(--postgres)
"$BIN/loadgen" --issuer "http://127.0.0.1:$BPORT" --admin-token="$ADMIN" --scenario "$SCENARIO" \
  --duration "$DURATION" --concurrency "$CONCURRENCY" --server-pid "$BROKER_PID" --mobile-devices "$MOBILE_DEVICES" --logins-per-device "$LOGINS_PER_DEVICE" --rounds "$ROUNDS" --rate "$RATE" --set-alg "$SET_ALG" --id-token-alg "$ID_TOKEN_ALG" \
  "${extra[@]}" "${drain[@]}" --sms-log "$WORK/broker.log" --markdown
