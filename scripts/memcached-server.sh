#!/usr/bin/env bash
# Starts or stops the throwaway memcached server for the memcached store's
# tests.
#
#   bash scripts/memcached-server.sh start STATE_DIR   # prints `export VAR=value` lines
#   bash scripts/memcached-server.sh stop STATE_DIR
#
# `start` installs memcached from Debian when it is missing, starts one
# server on a free 127.0.0.1 port (TCP only: `-U 0`; 64 MiB of memory; as
# root with `-u root`, which memcached otherwise refuses), waits until it
# answers `version` over the protocol, not just an open port, writes its PID
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

# Whether the server on port $1 answers `version` (memcached's own ping).
answers_version() {
    local python
    python=$(command -v python3 || command -v python) || return 1
    "$python" - "$1" <<'EOF' 2>/dev/null
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    s.sendall(b"version\r\n")
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = s.recv(256)
        if not chunk:
            break
        reply += chunk
sys.exit(0 if reply.startswith(b"VERSION ") else 1)
EOF
}

start() {
    ensure_command memcached memcached
    stop_all
    : >"$log_file"

    local port user_args=()
    port=$(free_port)
    if [ "$(id -u)" = 0 ]; then
        user_args=(-u root)
    fi
    spawn "$pid_file" "$log_file" \
        memcached -l 127.0.0.1 -p "$port" -U 0 -m 64 "${user_args[@]}"

    if ! wait_until "$READY_TIMEOUT" answers_version "$port"; then
        is_running "$(cat "$pid_file" 2>/dev/null)" memcached || show_log "$log_file"
        stop_all
        die "memcached on port $port did not answer \`version\` within $READY_TIMEOUT s"
    fi
    log "memcached at memcache://127.0.0.1:$port (pid $(cat "$pid_file"))"
    echo "export MEMCACHED_URL='memcache://127.0.0.1:$port'"
    echo "export KVSESSION_MEMCACHED_SERVER='$(command -v memcached)'"
}

case "$action" in
start) start ;;
stop) stop_all ;;
*) usage ;;
esac
