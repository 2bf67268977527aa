#!/usr/bin/env bash
# The project's single test command:
#
#   bash scripts/test.sh [extra cargo test args]
#
# Installs and starts the servers the tests need (a MongoDB-compatible server
# and an S3 server, each in a venv under target/test-state; redis-server from
# Debian, a single server and a 3-node cluster; a throwaway PostgreSQL
# cluster from Debian's postgresql; memcached from Debian), builds the tests
# meanwhile, runs every test of the workspace, and stops the servers it
# started, by PID, whatever happens.
#
# Opt-outs (CI sets none): KVSESSION_SKIP_MONGODB=1, KVSESSION_SKIP_S3=1,
# KVSESSION_SKIP_REDIS=1, KVSESSION_SKIP_POSTGRES=1,
# KVSESSION_SKIP_MEMCACHED=1 skip the server and the tests that need it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
state=${KVSESSION_STATE_DIR:-$root/target/test-state}
mkdir -p "$state"

# Every crate with the features its tests need: the S3 tests of the
# object_store store need its (opt-in) `aws` feature.
features=(--features rocket_kvsession_object_store/aws)

servers=()
[ "${KVSESSION_SKIP_MONGODB:-}" = 1 ] || servers+=(mongodb)
[ "${KVSESSION_SKIP_S3:-}" = 1 ] || servers+=(s3)
[ "${KVSESSION_SKIP_REDIS:-}" = 1 ] || servers+=(redis)
[ "${KVSESSION_SKIP_POSTGRES:-}" = 1 ] || servers+=(postgres)
[ "${KVSESSION_SKIP_MEMCACHED:-}" = 1 ] || servers+=(memcached)

stop_servers() {
    for name in "${servers[@]}"; do
        bash "scripts/$name-server.sh" stop "$state" || true
    done
}
trap stop_servers EXIT

# Start the servers in the background while the tests compile.
pids=()
for name in "${servers[@]}"; do
    bash "scripts/$name-server.sh" start "$state" >"$state/$name.env" 2>"$state/$name.start.log" &
    pids+=($!)
done

echo "test: building the tests" >&2
cargo test --workspace "${features[@]}" --no-run

for i in "${!servers[@]}"; do
    name=${servers[$i]}
    if ! wait "${pids[$i]}"; then
        echo "test: starting the $name test server failed:" >&2
        cat "$state/$name.start.log" >&2
        exit 1
    fi
    # shellcheck disable=SC1090
    . "$state/$name.env"
    echo "test: $name test server is up" >&2
done

cargo test --workspace "${features[@]}" "$@"

# The metrics tests need the core's (opt-in) `metrics` feature, which the
# run above leaves off so that the core is tested as users build it.
cargo test -p rocket_kvsession_tests --features metrics --test metrics
