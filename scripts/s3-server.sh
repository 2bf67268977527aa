#!/usr/bin/env bash
# Starts or stops the S3-compatible test server for the object_store store.
#
#   bash scripts/s3-server.sh start STATE_DIR   # prints `export VAR=value` lines
#   bash scripts/s3-server.sh stop STATE_DIR
#
# `start` installs moto's S3 server (PyPI `moto[server]`) into a venv under
# STATE_DIR (reused when already there), starts it on 127.0.0.1 on a free port,
# waits until it answers S3 requests, creates the test bucket, writes its PID
# to STATE_DIR/s3.pid and prints on stdout only the exports the tests read:
#
#   KVSESSION_S3_ENDPOINT     http://127.0.0.1:PORT
#   KVSESSION_S3_BUCKET       the bucket the tests use
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_DEFAULT_REGION
#   AWS_ENDPOINT, AWS_ALLOW_HTTP   the same server for object_store's builders
#
# Everything else goes to stderr or STATE_DIR/s3.log. `stop` stops the server
# by its PID and waits for it to exit.
set -euo pipefail

MOTO_VERSION="5.2.5"
READY_TIMEOUT=60
BUCKET="kvsession-test"
REGION="us-east-1"
ACCESS_KEY="kvsession-test-key"
SECRET_KEY="kvsession-test-secret"

usage() {
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 2
}

log() { echo "s3-server: $*" >&2; }
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

venv="$state_dir/s3-venv"
python="$venv/bin/python"
pid_file="$state_dir/s3.pid"
log_file="$state_dir/s3.log"

# Whether PID is alive and is our moto server (never signal a reused PID).
is_our_server() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "moto_server"
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
    rm -f "$pid_file"
}

install_moto() {
    if [ -x "$python" ] && "$python" -c "import moto, boto3, flask" 2>/dev/null &&
        [ "$("$python" -c 'import moto; print(moto.__version__)')" = "$MOTO_VERSION" ]; then
        return 0
    fi
    command -v python3 >/dev/null || die "python3 is required"
    log "installing moto[server]==$MOTO_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || die "cannot create a venv (install python3-venv)"
    "$python" -m pip install --quiet --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION" >&2 || die "pip install moto[server] failed"
}

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# An S3 request through boto3: succeeds only when the server speaks S3.
s3_call() {
    local endpoint=$1 what=$2
    AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY \
        "$python" - "$endpoint" "$BUCKET" "$REGION" "$what" <<'PY'
import sys
import boto3
from botocore.config import Config
endpoint, bucket, region, what = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                  config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}))
if what == "ping":
    s3.list_buckets()
elif what == "create-bucket":
    s3.create_bucket(Bucket=bucket)
    s3.head_bucket(Bucket=bucket)
PY
}

start_server() {
    stop_server
    install_moto
    local port endpoint pid
    port=$(free_port)
    endpoint="http://127.0.0.1:$port"
    log "starting moto_server on $endpoint (log: $log_file)"
    # setsid: the server must not share the caller's process group.
    setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log_file" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pid_file"

    local deadline=$((SECONDS + READY_TIMEOUT))
    until s3_call "$endpoint" ping >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$log_file" >&2 || true
            rm -f "$pid_file"
            die "moto_server exited before answering"
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -n 30 "$log_file" >&2 || true
            stop_server
            die "moto_server did not answer S3 requests within ${READY_TIMEOUT} s"
        fi
        sleep 0.3
    done
    s3_call "$endpoint" create-bucket >&2 || {
        stop_server
        die "cannot create bucket $BUCKET"
    }
    log "ready (pid $pid, bucket $BUCKET)"

    echo "export KVSESSION_S3_ENDPOINT=$endpoint"
    echo "export KVSESSION_S3_BUCKET=$BUCKET"
    echo "export AWS_ACCESS_KEY_ID=$ACCESS_KEY"
    echo "export AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
    echo "export AWS_REGION=$REGION"
    echo "export AWS_DEFAULT_REGION=$REGION"
    echo "export AWS_ENDPOINT=$endpoint"
    echo "export AWS_ALLOW_HTTP=true"
}

case "$action" in
start) start_server ;;
stop) stop_server ;;
*) usage ;;
esac
