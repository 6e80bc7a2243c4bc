# Sourced by the e2e scripts: a throwaway Redis on a free port of 127.0.0.1 (no persistence).
#
#   start_redis DIR     sets REDIS_PORT and REDIS_PID; logs to DIR/redis.log; fails if it does not answer
#   stop_redis          stops it (safe to call twice, or when it never started)

REDIS_PID=""
REDIS_PORT=""

start_redis() {
    local dir="$1"
    REDIS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$dir" \
        --logfile "$dir/redis.log" --daemonize no &
    REDIS_PID=$!
    local _
    for _ in $(seq 100); do
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
    return 1
}

stop_redis() {
    if [[ -n "$REDIS_PID" ]] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    REDIS_PID=""
}
