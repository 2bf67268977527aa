#!/usr/bin/env bash
# Starts or stops the MongoDB-compatible test server for the mongodb store.
#
#   bash scripts/mongodb-server.sh start STATE_DIR   # prints `export VAR=value` lines
#   bash scripts/mongodb-server.sh stop STATE_DIR
#
# `start` installs SecantusDB (a MongoDB-wire-compatible server on WiredTiger,
# from PyPI) into a venv under STATE_DIR (reused when already there), starts it
# on 127.0.0.1 on a free port with a fresh data directory, waits until it
# answers a `ping`, writes its PID to STATE_DIR/mongodb.pid and prints on
# stdout only the exports the tests read:
#
#   MONGODB_URI                  the server, for every mongodb test
#   KVSESSION_SECANTUS_PYTHON    the venv's python, for the fault test that runs
#                                its own server with scripts/mongodb_server.py
#
# Everything else goes to stderr or STATE_DIR/mongodb.log. `stop` stops the
# server by its PID and waits for it to exit.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

SECANTUS_VERSION="0.7.0b3"
READY_TIMEOUT=60

usage() {
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 2
}

[ $# -eq 2 ] && [ -n "$2" ] || usage
action=$1
state_dir=$(abs_dir "$2")

launcher="$script_dir/mongodb_server.py"
venv="$state_dir/mongodb-venv"
python="$venv/bin/python"
pid_file="$state_dir/mongodb.pid"
port_file="$state_dir/mongodb.port"
log_file="$state_dir/mongodb.log"
data_dir="$state_dir/mongodb-data"

stop_server() {
    stop_pid "$pid_file" "mongodb_server.py"
    rm -f "$port_file"
}

# SecantusDB ships a wheel for CPython 3.11 only.
python311() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    die "SecantusDB ships a wheel for CPython 3.11 only, and no python3.11 was found"
}

# Whether the server answers a `ping` (the port is known once it listens).
server_ready() {
    is_running "$(cat "$pid_file" 2>/dev/null)" "mongodb_server.py" || {
        show_log "$log_file"
        rm -f "$pid_file"
        die "server exited during startup"
    }
    [ -s "$port_file" ] || return 1
    "$python" - "$(server_uri)" <<'PY' >/dev/null 2>&1
import sys
from pymongo import MongoClient
client = MongoClient(sys.argv[1], serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
client.admin.command("ping")
PY
}

server_uri() {
    echo "mongodb://127.0.0.1:$(cat "$port_file")/?retryWrites=false&directConnection=true"
}

start_server() {
    local base
    base=$(python311)
    VENV_PYTHON=$base make_venv "$venv" "secantusdb==$SECANTUS_VERSION"
    stop_server
    rm -rf "$data_dir"
    mkdir -p "$data_dir"
    log "starting server (log: $log_file)"
    spawn "$pid_file" "$log_file" "$python" "$launcher" --host 127.0.0.1 --port 0 \
        --storage-path "$data_dir" --port-file "$port_file" --ttl-sweep-seconds 1
    if ! WAIT_INTERVAL=0.3 wait_until "$READY_TIMEOUT" server_ready; then
        show_log "$log_file"
        stop_server
        die "server did not answer a ping within ${READY_TIMEOUT} s"
    fi
    local uri
    uri=$(server_uri)
    log "server ready at $uri (pid $(cat "$pid_file"))"
    echo "export MONGODB_URI='$uri'"
    echo "export KVSESSION_SECANTUS_PYTHON='$python'"
}

case "$action" in
start) start_server ;;
stop) stop_server ;;
*) usage ;;
esac
