#!/usr/bin/env bash
# Starts or stops the throwaway Redis servers for the redis store's tests: a
# single server and a three-primary Redis Cluster.
#
#   bash scripts/redis-server.sh start STATE_DIR   # prints `export VAR=value` lines
#   bash scripts/redis-server.sh stop STATE_DIR
#
# `start` installs redis-server from Debian when it is missing, starts four
# servers on free 127.0.0.1 ports without persistence (`--save ''
# --appendonly no`), each in a fresh directory under STATE_DIR/redis, joins
# three of them into a cluster (all 16384 slots, no replicas), waits until
# the single server answers PING and every cluster node reports
# `cluster_state:ok`, writes the PIDs to STATE_DIR/redis-*.pid and prints on
# stdout only the exports the tests read:
#
#   REDIS_URL                the single server
#   REDIS_CLUSTER_URLS       the cluster's nodes, comma-separated
#   KVSESSION_REDIS_SERVER   the redis-server binary, for the tests that run
#                            a short-lived server of their own (outage,
#                            command counts)
#
# Everything else goes to stderr or the servers' logs in STATE_DIR/redis.
# `stop` stops every server it started, by PID, and removes their
# directories.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_NAME=redis-server
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

READY_TIMEOUT=30
CLUSTER_NODES=3

usage() {
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
action=$1
[ -n "$2" ] || usage
state_dir=$(abs_dir "$2")
base_dir="$state_dir/redis"
names=(single)
for i in $(seq 1 "$CLUSTER_NODES"); do
    names+=("cluster-$i")
done

stop_all() {
    local name
    for name in "${names[@]}"; do
        stop_pid "$state_dir/redis-$name.pid" redis-server
    done
    rm -rf "$base_dir"
}

# Free loopback ports, all distinct.
used_ports=" "
next_port() {
    local port
    for _ in $(seq 1 50); do
        port=$(free_port)
        case "$used_ports" in
        *" $port "*) continue ;;
        esac
        used_ports="$used_ports$port "
        echo "$port"
        return 0
    done
    die "no free port found"
}

# start_server NAME PORT [EXTRA ARGS...]
start_server() {
    local name=$1 port=$2 dir="$base_dir/$1"
    shift 2
    mkdir -p "$dir"
    spawn "$state_dir/redis-$name.pid" "$dir/redis.log" \
        redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
        --save '' --appendonly no --daemonize no --logfile '' "$@"
}

answers_ping() {
    [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
}

cluster_ok() {
    local port
    for port in "$@"; do
        redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
}

check_alive() {
    local name
    for name in "${names[@]}"; do
        is_running "$(cat "$state_dir/redis-$name.pid" 2>/dev/null)" redis-server || {
            show_log "$base_dir/$name/redis.log"
            return 1
        }
    done
}

start() {
    ensure_command redis-server redis-server
    ensure_command redis-cli redis-tools
    stop_all
    mkdir -p "$base_dir"

    local single_port cluster_ports=() bus_port i port
    single_port=$(next_port)
    start_server single "$single_port"
    for i in $(seq 1 "$CLUSTER_NODES"); do
        port=$(next_port)
        bus_port=$(next_port)
        cluster_ports+=("$port")
        start_server "cluster-$i" "$port" --cluster-enabled yes \
            --cluster-config-file "$base_dir/cluster-$i/nodes.conf" \
            --cluster-port "$bus_port" --cluster-node-timeout 5000
    done

    for port in "$single_port" "${cluster_ports[@]}"; do
        if ! wait_until "$READY_TIMEOUT" answers_ping "$port"; then
            check_alive || true
            stop_all
            die "the server on port $port did not answer PING within $READY_TIMEOUT s"
        fi
    done
    check_alive || {
        stop_all
        die "a server exited during startup"
    }

    local nodes=()
    for port in "${cluster_ports[@]}"; do
        nodes+=("127.0.0.1:$port")
    done
    log "creating the cluster of ${nodes[*]}"
    if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$base_dir/cluster-create.log" 2>&1; then
        show_log "$base_dir/cluster-create.log"
        stop_all
        die "redis-cli --cluster create failed"
    fi
    if ! wait_until "$READY_TIMEOUT" cluster_ok "${cluster_ports[@]}"; then
        for port in "${cluster_ports[@]}"; do
            redis-cli -h 127.0.0.1 -p "$port" cluster info >&2 || true
        done
        stop_all
        die "the cluster did not reach cluster_state:ok within $READY_TIMEOUT s"
    fi

    local urls=""
    for port in "${cluster_ports[@]}"; do
        urls="${urls:+$urls,}redis://127.0.0.1:$port"
    done
    log "single server at redis://127.0.0.1:$single_port, cluster at $urls"
    echo "export REDIS_URL='redis://127.0.0.1:$single_port'"
    echo "export REDIS_CLUSTER_URLS='$urls'"
    echo "export KVSESSION_REDIS_SERVER='$(command -v redis-server)'"
}

case "$action" in
start) start ;;
stop) stop_all ;;
*) usage ;;
esac
