#!/usr/bin/env bash
# Instructions per operation, counted by callgrind: repeatable on a noisy shared machine where
# ops/s is not (see docs/benchmarks.md). Runs a release broker (SQLite + memory sessions, the dev
# SMS gateway, OTP caps off) under valgrind with instrumentation off, switches it on for exactly
# the operations of one scenario at a time, and prints instructions per operation. Compare two
# builds by pointing BIN at each. Not part of CI. Scenarios (default: the first three):
#   client-credentials  N client_credentials requests
#   login               M complete logins of C01, linked already (/authorize → mock VNeID →
#                       /callback → /token): the plain login
#   refresh             N refresh-token rotations of one family
#   login-link-id       M first logins, each a fresh identity (gen:<n>) whose legacy record holds
#                       its ID number: linked at once, no page
#   login-new-citizen   M first logins, each a fresh identity without a record: phone page, code
#                       page (the code read from the dev gateway's log line), account created
#   login-phone-link    M first logins, each a fresh identity whose record has no ID number: the
#                       record's phone proven by code, then linked
# STORAGE=postgres runs it on PostgreSQL + Redis on loopback (a fresh database, dropped after)
# instead of SQLite + memory; KEEP=DIR keeps the callgrind dumps (one per scenario, in order) for
# callgrind_annotate; RECORDS=K imports K synthetic records of each kind instead of M + 20.
#   cargo build --release -p broker
#   [STORAGE=postgres] [KEEP=DIR] bash bench/loadgen/instructions.sh [N=2000] [M=100] [SCENARIO...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
N=${1:-2000}
M=${2:-100}
SCENARIOS=("${@:3}")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(client-credentials login refresh)
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
WORK=$(mktemp -d)
read -r BPORT MPORT <<<"$(python3 -c 'import socket
a=socket.socket(); a.bind(("127.0.0.1",0)); b=socket.socket(); b.bind(("127.0.0.1",0))
print(a.getsockname()[1], b.getsockname()[1])')"
SECRET=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
ADMIN=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
DB=""
cleanup() {
  kill "${BROKER_PID:-}" "${MOCK_PID:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$WORK"/callgrind.* "$WORK/windows" "$KEEP"/ 2>/dev/null || true; fi
  if [ -n "$DB" ]; then psql postgres://postgres@127.0.0.1:5432/test -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN/broker" keys generate-master >"$WORK/master.key"
env -i PATH="$PATH" BROKER_ENVIRONMENT=development "$BIN/broker" mock-vneid --port "$MPORT" \
  --client-id broker --client-secret="$SECRET" --redirect-uri "http://127.0.0.1:$BPORT/callback/vneid" \
  >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
settings=(BROKER_ENVIRONMENT=development BROKER_ISSUER="http://127.0.0.1:$BPORT" BROKER_HTTP__PORT="$BPORT"
  BROKER_HTTP__WORKERS=1 BROKER_KEYS__MASTER_KEY_FILE="$WORK/master.key" BROKER_ADMIN__TOKEN="$ADMIN"
  BROKER_UPSTREAM__ISSUER="http://127.0.0.1:$MPORT" BROKER_UPSTREAM__CLIENT_SECRET="$SECRET"
  BROKER_LOG=warn,broker::otp::dev=info BROKER_RATE_LIMIT__ENABLED=false BROKER_SMS__GATEWAY=dev
  BROKER_OTP__PER_PHONE_PER_15_MIN=0 BROKER_OTP__PER_PHONE_PER_DAY=0 BROKER_OTP__PER_ACCOUNT_PER_DAY=0
  BROKER_OTP__PER_ADDRESS_PER_HOUR=0 BROKER_OTP__PER_PREFIX_PER_DAY=0 BROKER_OTP__GLOBAL_PER_DAY=0
  BROKER_DATABASE__URL="sqlite://$WORK/broker.db?mode=rwc" BROKER_KEYS__STORE=file
  BROKER_KEYS__DIR="$WORK/keys" BROKER_SESSIONS__BACKEND=memory)
if [ "${STORAGE:-sqlite}" = postgres ]; then
  DB="instr_$(date +%s)"
  psql postgres://postgres@127.0.0.1:5432/test -qc "CREATE DATABASE $DB" >/dev/null
  settings+=(BROKER_DATABASE__URL="postgres://postgres@127.0.0.1:5432/$DB" BROKER_KEYS__STORE=sql
    BROKER_SESSIONS__BACKEND=redis BROKER_SESSIONS__REDIS_URL=redis://127.0.0.1:6379
    BROKER_SESSIONS__KEY_PREFIX="instr-$DB:")
fi
# The synthetic legacy accounts (the login's citizen C01 links to hers by ID number); exit
# status 3 says the file's 20 malformed rows were refused, as they must be.
env -i PATH="$PATH" "${settings[@]}" "$BIN/broker" import legacy-accounts fixtures/legacy-accounts.csv \
  >"$WORK/import.log" 2>&1 || [ $? -eq 3 ] || { cat "$WORK/import.log"; exit 1; }
# The fresh identities gen:<n> of the linking branches (the driver's ranges below): records with
# their ID number for login-link-id (0..), with only their phone for login-phone-link (200000..);
# login-new-citizen's numbers (400000..) have none. RECORDS (default M + 20, what the logins use)
# imports more of each kind, as bench.sh does (20,000).
RECORDS=${RECORDS:-$((M + 20))}
env -i PATH="$PATH" BROKER_ENVIRONMENT=development "$BIN/broker" mock-vneid --emit-legacy "id:0-$RECORDS" >"$WORK/legacy-id.csv"
env -i PATH="$PATH" BROKER_ENVIRONMENT=development "$BIN/broker" mock-vneid --emit-legacy "phone:200000-$((200000 + RECORDS))" >"$WORK/legacy-phone.csv"
for f in legacy-id legacy-phone; do
  env -i PATH="$PATH" "${settings[@]}" "$BIN/broker" import legacy-accounts "$WORK/$f.csv" \
    >"$WORK/import-$f.log" 2>&1 || { cat "$WORK/import-$f.log"; exit 1; }
done
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

python3 - "$BPORT" "$ADMIN" "$N" "$M" "$BROKER_PID" "$WORK" "${SCENARIOS[@]}" <<'EOF'
import base64, hashlib, http.client, json, os, re, subprocess, sys, time, urllib.parse
port, admin, n, m, pid, work = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
scenarios = sys.argv[7:]

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

def keep_cookies(jar, raw):
    for k, v in raw:
        if k.lower() == "set-cookie":
            name, _, value = v.split(";")[0].partition("=")
            jar[name] = value

def cookie_header(jar):
    return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}

def sms_code(phone):
    # The code the dev SMS gateway logged for `phone` (masked there: first 4 and last 3 digits),
    # read from the broker's log rather than /dev/sms so that rendering that page is not counted.
    masked = re.escape(phone[:4]) + r"\*+" + re.escape(phone[-3:])
    for _ in range(200):
        with open(f"{work}/broker.log", encoding="utf-8", errors="replace") as log:
            lines = [line for line in log if re.search(masked, line)]
        if lines:
            return re.search(r"(?<!\d)(\d{6})(?!\d)", lines[-1].split("text", 1)[-1]).group(1)
        time.sleep(0.05)
    raise AssertionError(f"no SMS logged for {phone}")

def steps(b1, jar, h, phone, seen, page=None):
    # The standardisation pages as a citizen goes through them (phone, then the code, or
    # continue past a failure page); returns the headers of the redirect that leaves them. The
    # callback and a form that moves the login on answer with the next page itself (200), any
    # other form with a redirect to the page; every page's forms post to its step's address.
    for _ in range(8):
        if page is None:
            target = h.get("location", "")
            if not target.startswith("/login/"):
                return h
            s, _, raw, page = request(b1, "GET", target, headers=cookie_header(jar))
            assert s == 200, (s, page[:300])
            keep_cookies(jar, raw)
        target = re.search(rb'<form method="post" action="([^"]+)"', page).group(1).decode()
        seen.append(target)
        csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
        if b'id="send-code"' in page:
            fields = {"action": "phone", "phone": phone}
        elif b'id="verify-code"' in page:
            fields = {"action": "code", "code": sms_code(phone)}
        elif b'id="continue"' in page:
            fields = {"action": "continue"}
        else:
            raise AssertionError(page[:2000])
        fields["csrf"] = csrf
        headers = {"content-type": "application/x-www-form-urlencoded", **cookie_header(jar)}
        s, h, raw, body = request(b1, "POST", target, urllib.parse.urlencode(fields), headers)
        assert s in (200, 303), (s, body[:2000])
        keep_cookies(jar, raw)
        page = body if s == 200 else None
    raise AssertionError("the standardisation steps did not end")

def login(hint="C01", phone=None, pages=0):
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    q = urllib.parse.urlencode({"response_type": "code", "client_id": client["client_id"],
        "redirect_uri": redirect, "scope": "openid profile", "state": "s", "nonce": "n",
        "login_hint": hint, "code_challenge": challenge, "code_challenge_method": "S256"})
    b1 = conn()
    s, h, raw, page = request(b1, "GET", f"/authorize?{q}")
    assert s == 200, page
    jar = {}
    keep_cookies(jar, raw)
    href = re.search(rb'id="vneid-login" href="([^"]+)"', page).group(1).decode().replace("&amp;", "&").replace("&#38;", "&")
    up = urllib.parse.urlsplit(href)
    mc = conn(up.port)
    s, h, _, _ = request(mc, "GET", f"{up.path}?{up.query}")
    assert s == 303
    back = urllib.parse.urlsplit(h["location"])
    s, h, raw, body = request(b1, "GET", f"{back.path}?{back.query}", headers=cookie_header(jar))
    assert s in (200, 303), (s, body[:2000])
    keep_cookies(jar, raw)
    seen = []
    h = steps(b1, jar, h, phone, seen, body if s == 200 else None)
    # Each branch must take the path it stands for: no page for the plain login and the ID link.
    assert len(seen) == pages, f"{hint}: {len(seen)} step pages, expected {pages}"
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

def fresh(base, pages):
    # First logins of gen:<base>, gen:<base + 1>, ...: a new identity each time, each with a phone
    # of its own (as the per-phone OTP caps would have it in production too).
    numbers = iter(range(base, base + 1_000_000))
    def once():
        k = next(numbers)
        # The devkit's phone of gen:<k> (devkit/src/mock_vneid/synthetic.rs, `phone`).
        login(f"gen:{k}", f"097{k // 1000 % 10}{k // 10_000 % 1000:03d}{k % 1000:03d}", pages)
    return once

class Refresh:
    def __init__(self):
        self.token = login()
    def __call__(self):
        self.token = refresh(self.token)

# The ranges agree with the legacy files imported above: 0.. hold ID numbers, 200000.. phones
# only, 400000.. have no record. The phone step and the code step are two pages.
def plan(name):
    return {"client-credentials": lambda: (n, cc),
            "login": lambda: (m, login),
            "refresh": lambda: (n, Refresh()),
            "login-link-id": lambda: (m, fresh(0, 0)),
            "login-phone-link": lambda: (m, fresh(200_000, 2)),
            "login-new-citizen": lambda: (m, fresh(400_000, 2))}[name]()

with open(f"{work}/windows", "w") as windows:
    for name in scenarios:
        count, op = plan(name)
        for _ in range(20):   # warm caches and connections outside the count
            op()
        counting(True)
        for _ in range(count):
            op()
        counting(False)
        total()
        windows.write(f"{name} {count}\n")
EOF
kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true
python3 - "$WORK" <<'EOF'
import glob, sys
work = sys.argv[1]
def ir(path):
    for line in open(path):
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0
# One dump per scenario window, in order (the counters reset at each dump).
dumps = sorted(glob.glob(f"{work}/callgrind.*.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
for path, line in zip(dumps, open(f"{work}/windows")):
    name, count = line.split()
    print(f"{name + ':':20}{ir(path) / int(count):>12,.0f} instructions/op ({count} ops)")
EOF
