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

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

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

[ $# -eq 2 ] && [ -n "$2" ] || usage
action=$1
state_dir=$(abs_dir "$2")

venv="$state_dir/s3-venv"
python="$venv/bin/python"
pid_file="$state_dir/s3.pid"
log_file="$state_dir/s3.log"

stop_server() {
    stop_pid "$pid_file" "moto_server"
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

# Whether the server answers S3 requests; dies when it exited.
server_ready() {
    is_running "$(cat "$pid_file" 2>/dev/null)" "moto_server" || {
        show_log "$log_file"
        rm -f "$pid_file"
        die "moto_server exited before answering"
    }
    s3_call "$1" ping >/dev/null 2>&1
}

start_server() {
    stop_server
    make_venv "$venv" "moto[server]==$MOTO_VERSION"
    local port endpoint
    port=$(free_port)
    endpoint="http://127.0.0.1:$port"
    log "starting moto_server on $endpoint (log: $log_file)"
    : >"$log_file"
    spawn "$pid_file" "$log_file" "$venv/bin/moto_server" -H 127.0.0.1 -p "$port"
    if ! WAIT_INTERVAL=0.3 wait_until "$READY_TIMEOUT" server_ready "$endpoint"; then
        show_log "$log_file"
        stop_server
        die "moto_server did not answer S3 requests within ${READY_TIMEOUT} s"
    fi
    s3_call "$endpoint" create-bucket >&2 || {
        stop_server
        die "cannot create bucket $BUCKET"
    }
    log "ready (pid $(cat "$pid_file"), bucket $BUCKET)"

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
