#!/usr/bin/env bash
# Starts or stops the throwaway memcached server for the memcached store's
# tests.
#
#   bash scripts/memcached-server.sh start STATE_DIR   # prints `export VAR=value` lines
#   bash scripts/memcached-server.sh stop STATE_DIR
#
# `start` installs memcached from Debian when it is missing, starts one
# server on a free 127.0.0.1 port (TCP only: `-U 0`; 64 MiB of memory; as
# root with `-u root`, which memcached otherwise refuses), waits until the
# server on the port is this one (its `stats` name its PID: not just an open
# port, nor another server that took the port first), writes its PID
# to STATE_DIR/memcached.pid and prints on stdout only the exports the tests
# read:
#
#   MEMCACHED_URL               the server, memcache://127.0.0.1:PORT
#   KVSESSION_MEMCACHED_SERVER  the memcached binary, for the tests that run
#                               a short-lived server of their own (outage,
#                               command counts)
#
# Everything else goes to stderr or STATE_DIR/memcached.log. `stop` stops
# the server it started, by PID.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_NAME=memcached-server
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

READY_TIMEOUT=30

usage() {
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
action=$1
[ -n "$2" ] || usage
state_dir=$(abs_dir "$2")

pid_file="$state_dir/memcached.pid"
log_file="$state_dir/memcached.log"

stop_all() {
    stop_pid "$pid_file" memcached
}

# Whether the server on port $1 is memcached with PID $2: its `stats` name
# that PID (another server that took the port first must not pass for it).
serves_as() {
    local python
    python=$(command -v python3 || command -v python) || return 1
    "$python" - "$1" "$2" <<'EOF' 2>/dev/null
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    s.sendall(b"stats\r\n")
    reply = b""
    while not reply.endswith(b"END\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
pids = [line.split()[2] for line in reply.decode().splitlines() if line.startswith("STAT pid ")]
sys.exit(0 if pids == [sys.argv[2]] else 1)
EOF
}

# Done waiting: our server answers on port $1, or it (PID $2) exited.
ready() {
    serves_as "$1" "$2" || ! is_running "$2" memcached
}

start() {
    ensure_command memcached memcached
    stop_all
    : >"$log_file"

    local port pid user_args=() attempt
    if [ "$(id -u)" = 0 ]; then
        user_args=(-u root)
    fi
    # A port found free can be taken before memcached binds it (the other
    # servers' scripts start at the same time): memcached then exits, and
    # another port is tried.
    for attempt in 1 2 3; do
        port=$(free_port)
        spawn "$pid_file" "$log_file" \
            memcached -l 127.0.0.1 -p "$port" -U 0 -m 64 "${user_args[@]}"
        pid=$(cat "$pid_file")
        # Ready and still running: it is ours on the port.
        if wait_until "$READY_TIMEOUT" ready "$port" "$pid" && is_running "$pid" memcached; then
            break
        fi
        if is_running "$pid" memcached || [ "$attempt" = 3 ]; then
            show_log "$log_file"
            stop_all
            die "memcached on port $port did not answer within $READY_TIMEOUT s"
        fi
        log "memcached could not take port $port; trying another"
    done
    log "memcached at memcache://127.0.0.1:$port (pid $(cat "$pid_file"))"
    echo "export MEMCACHED_URL='memcache://127.0.0.1:$port'"
    echo "export KVSESSION_MEMCACHED_SERVER='$(command -v memcached)'"
}

case "$action" in
start) start ;;
stop) stop_all ;;
*) usage ;;
esac
