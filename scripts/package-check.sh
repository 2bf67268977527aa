#!/usr/bin/env bash
# Packages every publishable crate the way `cargo publish` would, builds the
# packaged sources, and fails if a package holds a file users should not get
# (tests, benches, scripts, CI, benchmark results, test data) or lacks one
# they need (README, CHANGES, both licence files).
#
#   bash scripts/package-check.sh
#
# `.ci/run` runs it. The packages' own builds share the workspace's target
# directory (CARGO_TARGET_DIR), so their dependencies are built once.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
CARGO_TARGET_DIR=$(abs_dir "${CARGO_TARGET_DIR:-$root/target}")
export CARGO_TARGET_DIR

# The publishable crates: every workspace member not marked `publish = false`.
mapfile -t crates < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["publish"] is None or p["publish"]:
        print(p["name"])')
[ "${#crates[@]}" -gt 0 ] || die "no publishable crate found"
log "packaging ${crates[*]}"

# What a package may hold: its sources, examples (the core's), README,
# CHANGES, licences, and the files cargo itself adds.
allowed='^(src/.+\.rs|examples/[^/]+\.rs|README\.md|CHANGES\.md|LICENSE-MIT|LICENSE-APACHE|Cargo\.toml|Cargo\.toml\.orig|Cargo\.lock|\.cargo_vcs_info\.json)$'
required=(src/lib.rs README.md CHANGES.md LICENSE-MIT LICENSE-APACHE Cargo.toml)

failed=0
for crate in "${crates[@]}"; do
    list=$(cargo package --allow-dirty --list -p "$crate" 2>/dev/null) ||
        die "cargo package --list -p $crate failed"
    while IFS= read -r file; do
        if ! [[ $file =~ $allowed ]]; then
            echo "package-check: $crate: $file should not be in the package" >&2
            failed=1
        fi
    done <<<"$list"
    for file in "${required[@]}"; do
        if ! grep -qxF "$file" <<<"$list"; then
            echo "package-check: $crate: $file is missing from the package" >&2
            failed=1
        fi
    done
done
[ "$failed" = 0 ] || die "some packages hold the wrong files (see above); fix the crates' \`include\` lists"

# Build what was packaged, as `cargo publish` does before it uploads.
# Packaged together, the store crates resolve the core from the package of
# it made in the same run.
package_args=()
for crate in "${crates[@]}"; do
    package_args+=(-p "$crate")
done
# Without debug info: nothing here is debugged, and codegen and linking of
# every package's dependencies take less.
CARGO_PROFILE_DEV_DEBUG=0 cargo package --allow-dirty "${package_args[@]}"
log "every package holds what it should, and builds"
