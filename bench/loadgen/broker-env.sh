# Sourced (not run) by bench/loadgen/bench.sh and bench/compare/side-by-side.sh: the release broker
# and its mock VNeID on loopback, set up the way every benchmark in docs/benchmarks.md runs them.
#
#   BIN=…/release; source bench/loadgen/broker-env.sh   # from the repository root
#   broker_prepare postgres      # or sqlite: work dir, ports, secrets, mock VNeID, database, legacy fixtures
#   broker_cmd import …          # any `broker` subcommand with the same environment
#   broker_serve                 # starts `broker serve`, waits for /healthz
#   broker_cleanup               # stops both processes, drops the database, removes the work dir
#
# After broker_prepare: WORK, BPORT (broker), MPORT (mock VNeID), DPORT (a spare port for a second
# instance), SECRET (upstream client secret),
# ADMIN (bootstrap admin token), DB (PostgreSQL database name, empty for sqlite), and the arrays
# `common` and `storage` (the broker's environment). broker_serve adds the array SERVE_ENV, if
# set, to the serving instance's environment. After broker_serve: BROKER_PID.
# Rate limits are off (HTTP and one-time codes). Inputs: BIN (directory of the release binaries),
# ONE_MOBILE_DEVICE (default true), HANG_ONE_IN (default 0: the mock's one token call in N that
# hangs), VARIANT (default a: the VNeID integration the mock plays and the broker is configured
# for, docs/vneid.md; b: explicit endpoints, client_secret_post, LoA1/LoA2, userinfo; c: userinfo
# only, answers sealed to an RSA key made here, AES mode SEAL_MODE, default ecb), BENCH_BROKER_ENV
# (more broker settings, space-separated).

# Starts the mock VNeID on MPORT for the broker on BPORT, in the VARIANT asked for; sets MOCK_PID
# and `upstream` (the broker's settings for that variant).
start_mock() {
  # The VNeID variant: the mock's flags and the broker's upstream profile (docs/vneid.md).
  local variant=${VARIANT:-a} mock_variant=()
  upstream=()
  local at="http://127.0.0.1:$MPORT"
  local explicit=(BROKER_UPSTREAM__DISCOVERY=false BROKER_UPSTREAM__AUTHORIZATION_ENDPOINT="$at/authorize"
    BROKER_UPSTREAM__TOKEN_ENDPOINT="$at/token" BROKER_UPSTREAM__USERINFO_ENDPOINT="$at/userinfo"
    BROKER_UPSTREAM__AUTH_METHOD=client_secret_post BROKER_UPSTREAM__USE_NONCE=false
    BROKER_UPSTREAM__USE_PKCE=false BROKER_UPSTREAM__USE_USERINFO=true)
  case "$variant" in
    a) ;;
    b) mock_variant=(--variant b)
       upstream=("${explicit[@]}" BROKER_UPSTREAM__JWKS_URI="$at/jwks"
         BROKER_UPSTREAM__ACR_VALUES__LEVEL1=LoA1 BROKER_UPSTREAM__ACR_VALUES__LEVEL2=LoA2) ;;
    c) # The broker's RSA key pair at VNeID: the private half (PKCS#8 PEM) for the broker, the
       # public half for the mock, which seals its answers to it.
       openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/rp.pem" 2>/dev/null
       openssl pkey -in "$WORK/rp.pem" -pubout -outform DER -out "$WORK/rp.pub.der"
       mock_variant=(--variant c --seal-to "$WORK/rp.pub.der" --seal-mode "${SEAL_MODE:-ecb}")
       upstream=("${explicit[@]}" BROKER_UPSTREAM__USE_ID_TOKEN=false
         BROKER_UPSTREAM__ENCRYPTION__PRIVATE_KEY_FILE="$WORK/rp.pem"
         BROKER_UPSTREAM__ENCRYPTION__MODE="${SEAL_MODE:-ecb}") ;;
    *) echo "VARIANT=$variant: a, b or c" >&2; return 1 ;;
  esac
  env -i PATH="$PATH" BROKER_ENVIRONMENT=development "$BIN/broker" mock-vneid --port "$MPORT" \
    --client-id broker --client-secret="$SECRET" --redirect-uri "http://127.0.0.1:$BPORT/callback/vneid" \
    --hang-one-in "${HANG_ONE_IN:-0}" "${mock_variant[@]}" > "$WORK/mock.log" 2>&1 &
  MOCK_PID=$!
}

broker_prepare() {
  local pair=${1:-postgres}
  WORK=$(mktemp -d)
  SECRET=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  ADMIN=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  DB=""
  "$BIN/broker" keys generate-master > "$WORK/master.key"

  # The mock VNeID on free ports. A port found free can be taken again before the mock binds it
  # (another process's outgoing connection gets it as its local port): then the mock exits, and
  # it is started again on other ports. A run whose mock never answered used to fail every
  # request of every scenario. The ports are drawn below the kernel's range for outgoing
  # connections (`ip_local_port_range`), where only a listening process can take them: the
  # broker's port waits through the imports before the broker binds it, and a run once ended
  # without its table, the broker's port most likely taken meanwhile.
  local attempt
  for attempt in 1 2 3 4 5; do
    local ports
    ports=$(python3 -c 'import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
picked = []
while len(picked) < 3:
    port = random.randrange(max(1024, low - 12000), low)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    if port not in picked:
        picked.append(port)
print(*picked)')
    read -r BPORT MPORT DPORT <<<"$ports"
    start_mock
    local _
    for _ in $(seq 1 100); do
      curl -sf -o /dev/null "http://127.0.0.1:$MPORT/.well-known/openid-configuration" && break
      kill -0 "$MOCK_PID" 2>/dev/null || break
      sleep 0.1
    done
    curl -sf -o /dev/null "http://127.0.0.1:$MPORT/.well-known/openid-configuration" && break
    echo "the mock VNeID did not answer on port $MPORT (attempt $attempt):" >&2
    tail -5 "$WORK/mock.log" >&2
    kill "$MOCK_PID" 2>/dev/null || true
    wait "$MOCK_PID" 2>/dev/null || true
    MOCK_PID=""
  done
  [ -n "${MOCK_PID:-}" ] || { echo "FATAL: the mock VNeID never started" >&2; return 1; }

  common=(BROKER_ENVIRONMENT=development BROKER_ISSUER="http://127.0.0.1:$BPORT" BROKER_HTTP__PORT="$BPORT"
    BROKER_KEYS__MASTER_KEY_FILE="$WORK/master.key" BROKER_ADMIN__TOKEN="$ADMIN"
    BROKER_UPSTREAM__ISSUER="http://127.0.0.1:$MPORT" BROKER_UPSTREAM__CLIENT_SECRET="$SECRET"
    BROKER_LOG=warn,broker::otp::dev=info BROKER_RATE_LIMIT__ENABLED=false BROKER_SMS__GATEWAY=dev
    BROKER_DEVICES__ONE_MOBILE_DEVICE="${ONE_MOBILE_DEVICE:-true}"
    BROKER_OTP__PER_PHONE_PER_15_MIN=0 BROKER_OTP__PER_PHONE_PER_DAY=0 BROKER_OTP__PER_ACCOUNT_PER_DAY=0
    BROKER_OTP__PER_ADDRESS_PER_HOUR=0 BROKER_OTP__PER_PREFIX_PER_DAY=0 BROKER_OTP__GLOBAL_PER_DAY=0
    "${upstream[@]}")
  local more
  read -r -a more <<<"${BENCH_BROKER_ENV:-}"
  common+=("${more[@]}")
  if [ "$pair" = postgres ]; then
    DB="bench_$(date +%s)_$$"
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
  broker_cmd import legacy-accounts fixtures/legacy-accounts.csv > "$WORK/import.log" 2>&1 \
    || [ $? -eq 3 ] || { cat "$WORK/import.log"; return 1; }
}

# Runs `broker ARGS…` with the benchmark's environment (and nothing else of the caller's).
broker_cmd() {
  env -i PATH="$PATH" "${common[@]}" "${storage[@]}" "$BIN/broker" "$@"
}

broker_serve() {
  # Not through broker_cmd: a backgrounded function is a subshell, and BROKER_PID must be the
  # broker's own pid (loadgen's --server-pid charges its CPU; RSS is read from /proc/PID).
  env -i PATH="$PATH" "${common[@]}" "${storage[@]}" "${SERVE_ENV[@]}" "$BIN/broker" serve > "$WORK/broker.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$BPORT/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$BPORT/healthz" >/dev/null || { cat "$WORK/broker.log"; return 1; }
}

broker_cleanup() {
  # Stop the processes first: nothing below may keep them alive (under `set -e -o pipefail`, a
  # `grep | head` whose grep dies of SIGPIPE would end an EXIT trap early).
  local pid
  local drainer=""
  [ -s "${WORK:-/nonexistent}/drainer.pid" ] && drainer=$(cat "$WORK/drainer.pid")
  for pid in ${BROKER_PID:-} ${MOCK_PID:-} $drainer; do kill "$pid" 2>/dev/null || true; done
  for pid in ${BROKER_PID:-} ${MOCK_PID:-}; do wait "$pid" 2>/dev/null || true; done
  if grep -qE "ERROR|WARN" "${WORK:-/nonexistent}/broker.log" 2>/dev/null; then
    echo "--- broker warnings and errors (first 20):"
    { grep -E "ERROR|WARN" "${WORK}/broker.log" | head -20; } || true
  fi
  # BENCH_KEEP=1 keeps the database and the broker's log for a look at what failed.
  if [ -n "${BENCH_KEEP:-}" ]; then
    echo "--- kept: database ${DB:-(none)}, broker log ${WORK:-?}/broker.log (drop and remove them when done)"
    return 0
  fi
  if [ -n "${DB:-}" ]; then psql postgres://postgres@127.0.0.1:5432/test -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; fi
  if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi
}
