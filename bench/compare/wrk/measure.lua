-- wrk script for bench/compare/side-by-side.sh: one request shape per run, every response checked.
--
-- Environment:
--   WRK_METHOD   GET (default) or POST
--   WRK_AUTH     Authorization header value (Basic … for the client, Bearer … for userinfo)
--   WRK_BODY     form body of a POST (application/x-www-form-urlencoded)
--   WRK_TOKENS   refresh mode: a file of refresh tokens, one a line, shared out among the threads;
--                each request redeems one (grant_type=refresh_token) and the refresh_token of each
--                2xx response goes back into the thread's pool for a later request. A connection
--                sends its next request only after its response was read, so a pool of at least
--                (connections per thread + 1) tokens never runs dry while refreshes succeed: each
--                token is redeemed exactly once and every chain rotates as a client's would.
--   WRK_THREADS  the -t value (refresh mode: how the tokens are shared out)
--   WRK_EXPECT   a Lua pattern a successful body must match, e.g. '"active"%s*:%s*true' for
--                introspection (an inactive token is a 200 too)
--
-- A response counts as a success only if its status is 2xx, its body matches WRK_EXPECT (if set)
-- and, in refresh mode, it holds a new refresh_token. At the end one line is printed for the script to parse:
--   RESULT requests=N ok=N bad=N socket_errors=N duration_us=N first_bad=<status> <body start>

local method = os.getenv("WRK_METHOD") or "GET"
local auth = os.getenv("WRK_AUTH")
local body = os.getenv("WRK_BODY")
local token_file = os.getenv("WRK_TOKENS")
local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
local expect = os.getenv("WRK_EXPECT")
if expect == "" then expect = nil end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

ok, bad, first_bad = 0, 0, ""
local headers = {}
local pool, head, tail = {}, 1, 0
local refresh = token_file ~= nil and token_file ~= ""

local function push(t)
  tail = tail + 1
  pool[tail] = t
end

local function pop()
  if head > tail then return nil end
  local t = pool[head]
  pool[head] = nil
  head = head + 1
  return t
end

local function form_escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  if auth and auth ~= "" then headers["Authorization"] = auth end
  if method == "POST" then headers["Content-Type"] = "application/x-www-form-urlencoded" end
  if refresh then
    local i = 0
    for line in io.lines(token_file) do
      if line ~= "" then
        if i % nthreads == id then push(line) end
        i = i + 1
      end
    end
  end
end

function request()
  if refresh then
    -- An empty pool means refreshes failed; the request still goes out and fails visibly.
    local t = pop() or "pool-exhausted"
    return wrk.format("POST", nil, headers, "grant_type=refresh_token&refresh_token=" .. form_escape(t))
  end
  return wrk.format(method, nil, headers, body)
end

local function note_bad(status, text)
  bad = bad + 1
  if first_bad == "" then
    first_bad = tostring(status) .. " " .. string.sub(string.gsub(text or "", "%s+", " "), 1, 160)
  end
end

function response(status, hdrs, text)
  if status < 200 or status > 299 then
    note_bad(status, text)
    return
  end
  if expect and not string.find(text, expect) then
    note_bad(status, "body does not match WRK_EXPECT: " .. text)
    return
  end
  if refresh then
    local rt = string.match(text, '"refresh_token"%s*:%s*"([^"]+)"')
    if not rt then
      note_bad(status, "no refresh_token: " .. text)
      return
    end
    push(rt)
  end
  ok = ok + 1
end

function done(summary, latency, requests)
  local total_ok, total_bad, first = 0, 0, ""
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_bad = total_bad + t:get("bad")
    local f = t:get("first_bad")
    if first == "" and f ~= nil then first = f end
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  io.write(string.format("RESULT requests=%d ok=%d bad=%d socket_errors=%d duration_us=%d first_bad=%s\n",
    summary.requests, total_ok, total_bad, socket_errors, summary.duration, first))
end
