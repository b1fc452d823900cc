#!/usr/bin/env bash
# How long a revocation committed through one broker instance takes to be refused by another
# (issue 9: every other instance within p99 100 ms, never later than one catch-up read after a
# lost notification). Not part of CI. Usage, from the repo root:
#   cargo build --release -p broker
#   bash bench/loadgen/revocation-propagation.sh [rounds] [lost-rounds]
#
# Two release brokers (A and B) on one fresh PostgreSQL database + Redis prefix, set up as every
# benchmark is (bench/loadgen/broker-env.sh). Each round: a client_credentials access token from
# A; B introspects it (active, now in B's verified-token cache); A revokes it (RFC 7009); the
# driver then introspects at A once (must be inactive at once: the committing instance) and at B
# in a tight loop until B says inactive. The figure is from A's revoke response to B's first
# inactive answer, so it includes one introspection's round trip (an upper bound).
# The lost rounds first terminate every broker listener connection in PostgreSQL
# (pg_terminate_backend on application_name = broker-listener), then revoke: B learns of it from
# the catch-up read after its listener reconnects (or the periodic sweep).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROUNDS=${1:-500}
LOST=${2:-20}
BIN=${CARGO_TARGET_DIR:-target}/release
source bench/loadgen/broker-env.sh
SECOND_PID=""
cleanup() {
  [ -n "$SECOND_PID" ] && kill "$SECOND_PID" 2>/dev/null || true
  broker_cleanup
}
trap cleanup EXIT
broker_prepare postgres
broker_serve
env -i PATH="$PATH" "${common[@]}" "${storage[@]}" BROKER_HTTP__PORT="$DPORT" "$BIN/broker" serve > "$WORK/second.log" 2>&1 &
SECOND_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$DPORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$DPORT/healthz" >/dev/null || { cat "$WORK/second.log"; exit 1; }

python3 - "$BPORT" "$DPORT" "$ADMIN" "$DB" "$ROUNDS" "$LOST" <<'EOF'
import base64, http.client, json, statistics, subprocess, sys, time, urllib.parse

a_port, b_port, admin, db, rounds, lost = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
A = http.client.HTTPConnection("127.0.0.1", int(a_port))
B = http.client.HTTPConnection("127.0.0.1", int(b_port))

def call(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    return r.status, data

def admin_post(path, doc, token):
    status, data = call(A, "POST", path, json.dumps(doc), {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    assert status in (200, 201), (path, status, data)
    return json.loads(data)

operator = admin_post("/admin/operators", {"name": "propagation-%d" % time.time_ns()}, admin)["token"]
client = admin_post("/admin/clients", {
    "client_name": "propagation", "redirect_uris": ["http://127.0.0.1/cb"],
    "grant_types": ["client_credentials"], "response_types": [],
    "token_endpoint_auth_method": "client_secret_basic", "scope": "openid"}, operator)
basic = "Basic " + base64.b64encode(("%s:%s" % (client["client_id"], client["client_secret"])).encode()).decode()
form = {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"}

def token():
    status, data = call(A, "POST", "/token", "grant_type=client_credentials", form)
    assert status == 200, data
    return json.loads(data)["access_token"]

def active(conn, tok):
    status, data = call(conn, "POST", "/introspect", urllib.parse.urlencode({"token": tok}), form)
    assert status == 200, data
    return json.loads(data)["active"]

def revoke(tok):
    status, data = call(A, "POST", "/revoke", urllib.parse.urlencode({"token": tok, "token_type_hint": "access_token"}), form)
    assert status == 200, data

def round_trip(kill_listeners):
    tok = token()
    assert active(B, tok), "B must know the fresh token"
    if kill_listeners:
        subprocess.run(["psql", "postgres://postgres@127.0.0.1:5432/" + db, "-qAtc",
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'broker-listener'"],
                       check=True, capture_output=True)
    revoke(tok)
    t0 = time.perf_counter()
    at_once = not active(A, tok)
    polls = 0
    while True:
        polls += 1
        if not active(B, tok):
            return (time.perf_counter() - t0) * 1000, at_once, polls
        if time.perf_counter() - t0 > 30:
            raise SystemExit("B still says active after 30 s")

def report(name, results):
    ms = sorted(r[0] for r in results)
    pct = lambda p: ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))]
    late_at_a = sum(1 for r in results if not r[1])
    print("| %s | %d | %.2f | %.2f | %.2f | %.2f | %d |" % (
        name, len(ms), pct(50), pct(90), pct(99), ms[-1], late_at_a))

for _ in range(20):
    round_trip(False)  # warm-up: connections, caches
print("| rounds | n | p50 ms | p90 ms | p99 ms | max ms | A still active after its own revoke |")
print("|---|---:|---:|---:|---:|---:|---:|")
report("notified (LISTEN/NOTIFY)", [round_trip(False) for _ in range(rounds)])
if lost:
    results = []
    for _ in range(lost):
        results.append(round_trip(True))
        time.sleep(0.5)  # let the listeners reconnect before the next round
    report("listener connection killed first", results)
EOF
