#!/usr/bin/env bash
# The sweep at scale: `cleanup_sessions` on an object_store local directory
# against `find DIR -type f -delete` on an identical directory.
#
#   bash scripts/bench-sweep.sh [COUNT...]        # default: 100000 1000000
#
# For each COUNT it builds two identical directories of COUNT session files
# (all expired), times one sweep (in its own process, so its peak RSS is the
# sweep's alone) on the first and `find -type f -delete` on the second, and
# prints both times (wall clock, and user + system CPU time in brackets),
# their ratios (wall clock, and CPU time) and the sweep's peak RSS (VmHWM, read by the sweep process itself). Then it
# does the same with only 10% of the sessions expired, against
# `find DIR -type f -mmin +60 -delete` (the expired files are the ones with an
# old modification time, so find deletes the same files the sweep does).
#
# Work directory: $KVSESSION_BENCH_DIR (default: target/bench-sweep under the
# cargo target directory); it needs about 4 GiB per million files and is
# removed at the end. Not part of the test command.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

root=$(cd "$script_dir/.." && pwd)
cd "$root"
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(100000 1000000)

target_dir=${CARGO_TARGET_DIR:-$root/target}
work=${KVSESSION_BENCH_DIR:-$target_dir/bench-sweep}
rm -rf "$work"
work=$(abs_dir "$work")
trap 'rm -rf "$work"' EXIT
ensure_command python3

log "building the sweep benchmark (release)"
bin=$(cargo bench -p rocket_kvsession_object_store --bench sweep --no-run \
    --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "sweep" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || die "cannot find the built benchmark"

now=$(date +%s)

# Lets writeback (and the discards of deleted files) finish, so that each
# timed phase starts from a quiet disk.
settle() {
    sync
    sleep 5
}

# timed FILE CMD...: runs CMD, appends "wall user+sys" seconds to FILE.
timed() {
    local out=$1
    shift
    /usr/bin/time -f "%e %U %S" -o "$out.time" "$@"
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$out.time" >"$out"
}

# run COUNT PERCENT: prints one result line.
run() {
    local count=$1 percent=$2 a="$work/a" b="$work/b" line rss
    rm -rf "$a" "$b"
    "$bin" generate "$a" "$count" "$percent" "$now" >&2
    "$bin" generate "$b" "$count" "$percent" "$now" >&2
    settle
    if [ "$percent" -eq 100 ]; then
        timed "$work/find" find "$b" -type f -delete
    else
        timed "$work/find" find "$b" -type f -mmin +60 -delete
    fi
    settle
    timed "$work/sweep" "$bin" sweep "$a" >"$work/sweep.out"
    line=$(cat "$work/sweep.out")
    log "sweep: $line"
    rss=$(sed -n 's/.*peak_rss_kib=\([0-9]*\).*/\1/p' <<<"$line")
    local left_a left_b
    left_a=$(find "$a" -type f | wc -l)
    left_b=$(find "$b" -type f | wc -l)
    [ "$left_a" -eq "$left_b" ] || die "the sweep left $left_a files, find left $left_b"
    read -r sweep_s sweep_cpu <"$work/sweep"
    read -r find_s find_cpu <"$work/find"
    python3 - "$count" "$percent" "$sweep_s" "$sweep_cpu" "$find_s" "$find_cpu" "$rss" "$left_a" <<'PY'
import sys
count, percent, sweep, sweep_cpu, find, find_cpu, rss, left = sys.argv[1:9]
ratio = float(sweep) / float(find)
cpu_ratio = float(sweep_cpu) / float(find_cpu) if float(find_cpu) > 0 else float("inf")
print(f"| {int(count):,} | {percent}% | {float(sweep):.2f} s ({float(sweep_cpu):.2f} s) "
      f"| {float(find):.2f} s ({float(find_cpu):.2f} s) | {ratio:.2f} | {cpu_ratio:.2f} "
      f"| {int(rss) / 1024:.1f} MiB | {int(left):,} |")
PY
    rm -rf "$a" "$b"
}

echo "| sessions | expired | sweep, wall (CPU) | find, wall (CPU) | ratio (wall) | ratio (CPU) | sweep peak RSS | files left |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for count in "${counts[@]}"; do
    run "$count" 100
done
for count in "${counts[@]}"; do
    run "$count" 10
done
