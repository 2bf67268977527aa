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

SECANTUS_VERSION="0.7.0b3"
READY_TIMEOUT=60

usage() {
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 2
}

log() { echo "mongodb-server: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

[ $# -eq 2 ] || usage
action=$1
state_dir=$2
[ -n "$state_dir" ] || usage
mkdir -p "$state_dir"
state_dir=$(cd "$state_dir" && pwd)

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
launcher="$script_dir/mongodb_server.py"
venv="$state_dir/mongodb-venv"
python="$venv/bin/python"
pid_file="$state_dir/mongodb.pid"
port_file="$state_dir/mongodb.port"
log_file="$state_dir/mongodb.log"
data_dir="$state_dir/mongodb-data"

# Whether PID is alive and is our launcher (never signal a reused PID).
is_our_server() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "mongodb_server.py"
}

ping_server() {
    "$python" - "$1" <<'PY' >/dev/null 2>&1
import sys
from pymongo import MongoClient
client = MongoClient(sys.argv[1], serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
client.admin.command("ping")
PY
}

stop_server() {
    [ -f "$pid_file" ] || return 0
    local pid
    pid=$(cat "$pid_file")
    if is_our_server "$pid"; then
        log "stopping server (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "server (pid $pid) did not stop within 20 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
    fi
    rm -f "$pid_file" "$port_file"
}

install_server() {
    if [ -x "$python" ] && "$python" - "$SECANTUS_VERSION" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
import secantus, pymongo  # noqa: F401
sys.exit(0 if version("secantusdb") == sys.argv[1] else 1)
PY
        return 0
    fi
    local base=""
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
            base=$candidate
            break
        fi
    done
    [ -n "$base" ] || die "SecantusDB ships a wheel for CPython 3.11 only, and no python3.11 was found"
    log "installing secantusdb==$SECANTUS_VERSION into $venv"
    rm -rf "$venv"
    "$base" -m venv "$venv" >&2 || die "cannot create a venv with $base"
    "$venv/bin/pip" install --disable-pip-version-check --quiet "secantusdb==$SECANTUS_VERSION" >&2 ||
        die "pip install secantusdb==$SECANTUS_VERSION failed"
}

start_server() {
    install_server
    stop_server
    rm -rf "$data_dir"
    mkdir -p "$data_dir"
    rm -f "$port_file"
    log "starting server (log: $log_file)"
    nohup "$python" "$launcher" --host 127.0.0.1 --port 0 --storage-path "$data_dir" \
        --port-file "$port_file" --ttl-sweep-seconds 1 </dev/null >>"$log_file" 2>&1 &
    local pid=$!
    echo "$pid" >"$pid_file"

    local deadline=$((SECONDS + READY_TIMEOUT)) uri=""
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$pid" 2>/dev/null || {
            tail -n 30 "$log_file" >&2 || true
            rm -f "$pid_file"
            die "server exited during startup"
        }
        if [ -z "$uri" ] && [ -s "$port_file" ]; then
            uri="mongodb://127.0.0.1:$(cat "$port_file")/?retryWrites=false&directConnection=true"
        fi
        if [ -n "$uri" ] && ping_server "$uri"; then
            log "server ready at $uri (pid $pid)"
            echo "export MONGODB_URI='$uri'"
            echo "export KVSESSION_SECANTUS_PYTHON='$python'"
            return 0
        fi
        sleep 0.3
    done
    tail -n 30 "$log_file" >&2 || true
    stop_server
    die "server did not answer a ping within ${READY_TIMEOUT} s"
}

case "$action" in
start) start_server ;;
stop) stop_server ;;
*) usage ;;
esac
