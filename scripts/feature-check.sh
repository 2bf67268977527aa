#!/usr/bin/env bash
# Checks every publishable crate with no features and with each of its
# features alone, without dev-dependencies (as a user's build sees it), so
# the featureless core, sqlx with only `postgres` or only `sqlite`,
# object_store with one cloud and redis with TLS all build.
#
#   bash scripts/feature-check.sh
#
# `.ci/run` runs it. Installs cargo-hack (from crates.io) if it is missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

if ! cargo hack --version >/dev/null 2>&1; then
    log "installing cargo-hack"
    cargo install cargo-hack --locked --quiet
fi

# The unpublished members (tests, benches, the demo app) are not what users
# build; `--no-dev-deps` leaves out what only tests and examples need. All
# features at once is what clippy checks; a crate's `default` is one of its
# single features or all of them.
cargo hack check --workspace --each-feature --no-dev-deps \
    --exclude-all-features --exclude-features default \
    --exclude rocket_kvsession_tests --exclude rocket_kvsession_bench \
    --exclude rocket_kvsession_demo
log "every crate builds with no features and with each feature alone"

# The declared rust-version (Cargo.toml, [workspace.package]) is not checked
# by a build with that toolchain here (CI has one, the current stable); it is
# set from the dependencies' own minimums. Check that it is at least the
# highest `rust-version` declared by any crate the publishable crates build
# (normal and build dependencies, every platform, as locked).
cargo metadata --format-version 1 --locked | python3 scripts/rust_version_check.py
