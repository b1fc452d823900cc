# Shell helpers shared by the real-client tests (tests/node/run.sh, tests/browser/run.sh).
# Sourced, not run.

log() { echo "run.sh: $*" >&2; }

# Stops a background process: TERM, up to 5 s of grace, then KILL.
stop() {
    local pid=$1
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Waits up to 30 s for `url` to answer, failing early if process `pid` (called `name`) exits.
wait_for() { # url pid name
    local url=$1 pid=$2 name=$3
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before it was ready"
            return 1
        fi
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$name not ready after 30 s ($url)"
    return 1
}
