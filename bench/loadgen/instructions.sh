#!/usr/bin/env bash
# Instructions per operation, counted by callgrind: repeatable on a noisy shared machine where
# ops/s is not (see docs/benchmarks.md). Runs a release broker (SQLite + memory sessions) under
# valgrind with instrumentation off, switches it on for exactly N client_credentials requests and
# then for exactly M complete logins (/authorize → mock VNeID → /callback → /token), then for N
# refresh-token rotations, and prints
# instructions per operation. Compare two builds by pointing BIN at each. Not part of CI.
#   cargo build --release -p broker
#   bash bench/loadgen/instructions.sh [N=2000] [M=100]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
N=${1:-2000}
M=${2:-100}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
WORK=$(mktemp -d)
read -r BPORT MPORT <<<"$(python3 -c 'import socket
a=socket.socket(); a.bind(("127.0.0.1",0)); b=socket.socket(); b.bind(("127.0.0.1",0))
print(a.getsockname()[1], b.getsockname()[1])')"
SECRET=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
ADMIN=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
cleanup() {
  kill "${BROKER_PID:-}" "${MOCK_PID:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN/broker" keys generate-master >"$WORK/master.key"
env -i PATH="$PATH" BROKER_ENVIRONMENT=development "$BIN/broker" mock-vneid --port "$MPORT" \
  --client-id broker --client-secret "$SECRET" --redirect-uri "http://127.0.0.1:$BPORT/callback/vneid" \
  >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
settings=(BROKER_ENVIRONMENT=development BROKER_ISSUER="http://127.0.0.1:$BPORT" BROKER_HTTP__PORT="$BPORT"
  BROKER_HTTP__WORKERS=1 BROKER_KEYS__MASTER_KEY_FILE="$WORK/master.key" BROKER_ADMIN__TOKEN="$ADMIN"
  BROKER_UPSTREAM__ISSUER="http://127.0.0.1:$MPORT" BROKER_UPSTREAM__CLIENT_SECRET="$SECRET"
  BROKER_LOG=warn BROKER_RATE_LIMIT__ENABLED=false
  BROKER_DATABASE__URL="sqlite://$WORK/broker.db?mode=rwc" BROKER_KEYS__STORE=file
  BROKER_KEYS__DIR="$WORK/keys" BROKER_SESSIONS__BACKEND=memory)
# The synthetic legacy accounts (the login's citizen C01 links to hers by ID number); exit
# status 3 says the file's 20 malformed rows were refused, as they must be.
env -i PATH="$PATH" "${settings[@]}" "$BIN/broker" import legacy-accounts fixtures/legacy-accounts.csv \
  >"$WORK/import.log" 2>&1 || [ $? -eq 3 ] || { cat "$WORK/import.log"; exit 1; }
# A first start outside valgrind generates the signing keys (key generation varies from run to run).
env -i PATH="$PATH" "${settings[@]}" "$BIN/broker" serve >"$WORK/first.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$BPORT/healthz" >/dev/null && break; sleep 0.1; done
kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true
env -i PATH="$PATH" "${settings[@]}" valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$WORK/callgrind.%p" "$BIN/broker" serve >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$BPORT/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$BPORT/healthz" >/dev/null || { cat "$WORK/broker.log"; exit 1; }

python3 - "$BPORT" "$ADMIN" "$N" "$M" "$BROKER_PID" <<'EOF'
import base64, hashlib, http.client, json, os, re, subprocess, sys, urllib.parse
port, admin, n, m, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def conn(p=port):
    return http.client.HTTPConnection("127.0.0.1", p, timeout=120)

def request(c, method, url, body=None, headers=None):
    c.request(method, url, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.getheaders(), r.read()

c = conn()
redirect = "https://bench.example/cb"
status, _, _, body = request(c, "POST", "/admin/operators", json.dumps({"name": "instructions"}),
                             {"authorization": f"Bearer {admin}", "content-type": "application/json"})
assert status == 201, body
admin = json.loads(body)["token"]
status, _, _, body = request(c, "POST", "/admin/clients", json.dumps({
    "client_name": "instructions", "redirect_uris": [redirect],
    "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
    "scope": "openid profile"}), {"authorization": f"Bearer {admin}", "content-type": "application/json"})
assert status == 201, body
client = json.loads(body)
basic = "Basic " + base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
form = {"authorization": basic, "content-type": "application/x-www-form-urlencoded"}

def counting(on):
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", pid], check=True,
                   stdout=subprocess.DEVNULL)

def total():
    subprocess.run(["callgrind_control", "-d", pid], check=True, stdout=subprocess.DEVNULL)

def cc():
    s, _, _, b = request(c, "POST", "/token", "grant_type=client_credentials", form)
    assert s == 200, b

def login():
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    q = urllib.parse.urlencode({"response_type": "code", "client_id": client["client_id"],
        "redirect_uri": redirect, "scope": "openid profile", "state": "s", "nonce": "n",
        "login_hint": "C01", "code_challenge": challenge, "code_challenge_method": "S256"})
    b1 = conn()
    s, h, raw, page = request(b1, "GET", f"/authorize?{q}")
    assert s == 200, page
    cookies = "; ".join(v.split(";")[0] for k, v in raw if k.lower() == "set-cookie")
    href = re.search(rb'id="vneid-login" href="([^"]+)"', page).group(1).decode().replace("&amp;", "&").replace("&#38;", "&")
    up = urllib.parse.urlsplit(href)
    mc = conn(up.port)
    s, h, _, _ = request(mc, "GET", f"{up.path}?{up.query}")
    assert s == 303
    back = urllib.parse.urlsplit(h["location"])
    s, h, _, _ = request(b1, "GET", f"{back.path}?{back.query}", headers={"cookie": cookies})
    assert s == 303, s
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(h["location"]).query)["code"][0]
    s, _, _, b = request(c, "POST", "/token", urllib.parse.urlencode({"grant_type": "authorization_code",
        "code": code, "redirect_uri": redirect, "code_verifier": verifier}), form)
    assert s == 200, b
    return json.loads(b)["refresh_token"]

def refresh(token):
    s, _, _, b = request(c, "POST", "/token", urllib.parse.urlencode({"grant_type": "refresh_token",
        "refresh_token": token}), form)
    assert s == 200, b
    return json.loads(b)["refresh_token"]

for _ in range(20):   # warm caches and connections outside the count
    cc(); login()
counting(True)
for _ in range(n):
    cc()
counting(False)
total()
counting(True)
for _ in range(m):
    login()
counting(False)
total()
token = login()
for _ in range(20):
    token = refresh(token)
counting(True)
for _ in range(n):
    token = refresh(token)
counting(False)
total()
EOF
kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true
python3 - "$WORK" "$N" "$M" <<'EOF'
import glob, re, sys
work, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def ir(path):
    for line in open(path):
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0
counts = [ir(p) for p in sorted(glob.glob(f"{work}/callgrind.*.[123]"))]
# Dump 1: the client_credentials window; dump 2: the login window (counters reset at each dump).
print(f"client-credentials: {counts[0] / n:,.0f} instructions/op ({n} ops)")
print(f"login:              {counts[1] / m:,.0f} instructions/op ({m} complete logins)")
print(f"refresh:            {counts[2] / n:,.0f} instructions/op ({n} rotations of one family)")
EOF
