#!/usr/bin/env bash
# Starts or stops the throwaway PostgreSQL server for the sqlx store's tests.
#
#   bash scripts/postgres-server.sh start STATE_DIR   # prints `export VAR=value` lines
#   bash scripts/postgres-server.sh stop STATE_DIR
#
# `start` installs PostgreSQL from Debian when no server binaries are found
# under /usr/lib/postgresql/*/bin, creates a fresh cluster in a temporary
# directory under /tmp (PostgreSQL refuses to run as root, so when run as
# root the cluster belongs to the `postgres` user and the server runs as that
# user; the directory is recorded in STATE_DIR/postgres.cluster), trusts
# connections from loopback only, starts the server on a free 127.0.0.1 port
# with its socket in the cluster directory, waits until it answers a query,
# writes the server's PID to STATE_DIR/postgres.pid and prints on stdout only
# the exports the tests read:
#
#   DATABASE_URL              the server, for every PostgreSQL test
#   KVSESSION_POSTGRES_BIN    the directory of initdb/postgres, for the outage
#                             test that runs a second, short-lived server
#
# With DATABASE_URL already set, `start` starts nothing and passes it on:
# the tests use that database (each test in a table of its own).
#
# Everything else goes to stderr or STATE_DIR/postgres.log. `stop` sends the
# server (by its PID) SIGINT, PostgreSQL's fast shutdown, waits for it to
# exit and removes the cluster directory.
#
# Settings: KVSESSION_POSTGRES_MAX_CONNECTIONS (default 500; the test
# binaries run many pools at once).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_NAME=postgres-server
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

READY_TIMEOUT=60
MAX_CONNECTIONS=${KVSESSION_POSTGRES_MAX_CONNECTIONS:-500}

usage() {
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
action=$1
[ -n "$2" ] || usage
state_dir=$(abs_dir "$2")

pid_file="$state_dir/postgres.pid"
cluster_file="$state_dir/postgres.cluster"
log_file="$state_dir/postgres.log"

# The newest PostgreSQL server binaries Debian installed, if any.
find_bin_dir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

install_postgres() {
    find_bin_dir >/dev/null && return 0
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is missing and there is no apt-get to install it"
    [ "$(id -u)" = 0 ] || die "PostgreSQL is missing; install the Debian package postgresql or run as root"
    log "installing postgresql from Debian"
    apt_install postgresql || die "cannot install postgresql"
    find_bin_dir >/dev/null || die "postgresql is installed but no initdb was found"
}

# The prefix that runs a command as the cluster's owner: `postgres` when we
# are root. setpriv execs the command itself (no forking wrapper), so the PID
# spawn records is the server's own.
as_owner=()
if [ "$(id -u)" = 0 ]; then
    as_owner=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi

stop_server() {
    local pid cluster deadline
    if [ -f "$pid_file" ]; then
        pid=$(cat "$pid_file" 2>/dev/null || true)
        if is_running "$pid" postgres; then
            log "stopping server (pid $pid)"
            kill -INT "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 30))
            while is_running "$pid" && [ $SECONDS -lt $deadline ]; do
                sleep 0.1
            done
            if is_running "$pid"; then
                log "server (pid $pid) did not stop within 30 s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "$pid_file"
    fi
    if [ -f "$cluster_file" ]; then
        cluster=$(cat "$cluster_file")
        # Only ever remove a directory this script created.
        case "$cluster" in
        /tmp/kvsession-postgres.*) rm -rf "$cluster" ;;
        esac
        rm -f "$cluster_file"
    fi
}

ready() {
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres &&
        "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1
}

start_server() {
    install_postgres
    bin=$(find_bin_dir)
    stop_server
    if [ -n "${DATABASE_URL:-}" ]; then
        log "DATABASE_URL is set: the tests use that database; no server started"
        printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
        printf 'export KVSESSION_POSTGRES_BIN=%q\n' "$bin"
        return 0
    fi
    local cluster
    cluster=$(mktemp -d /tmp/kvsession-postgres.XXXXXX)
    echo "$cluster" >"$cluster_file"
    chmod 700 "$cluster"
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$cluster"
    fi
    log "creating a cluster in $cluster (log: $log_file)"
    "${as_owner[@]}" "$bin/initdb" -D "$cluster/data" -U postgres --auth=trust -E UTF8 \
        --locale=C --no-sync >>"$log_file" 2>&1 || {
        show_log "$log_file"
        die "initdb failed"
    }
    port=$(free_port)
    # fsync off: a throwaway cluster for tests, whose data need not survive a crash.
    spawn "$pid_file" "$log_file" "${as_owner[@]}" "$bin/postgres" -D "$cluster/data" \
        -p "$port" -k "$cluster" -c listen_addresses=127.0.0.1 \
        -c max_connections="$MAX_CONNECTIONS" -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off
    local pid
    pid=$(cat "$pid_file")
    if ! wait_until "$READY_TIMEOUT" ready; then
        show_log "$log_file"
        stop_server
        die "server did not answer a query within $READY_TIMEOUT s"
    fi
    is_running "$pid" postgres || {
        show_log "$log_file"
        die "server (pid $pid) is not running"
    }
    log "server ready on 127.0.0.1:$port (pid $pid)"
    echo "export DATABASE_URL='postgres://postgres@127.0.0.1:$port/postgres'"
    echo "export KVSESSION_POSTGRES_BIN='$bin'"
}

case "$action" in
start) start_server ;;
stop) stop_server ;;
*) usage ;;
esac
