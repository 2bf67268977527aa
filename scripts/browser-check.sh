#!/usr/bin/env bash
# Checks the login example in a real browser: headless Chromium, driven by
# scripts/browser_check.py through the Chrome DevTools Protocol.
#
#   bash scripts/browser-check.sh [STATE_DIR]   # default target/browser-check
#
# Installs Debian's chromium when it is missing, builds the login example
# (`cargo build --example login`), starts it on a free 127.0.0.1 port and
# Chromium (`--headless=new`, a fresh profile under STATE_DIR), then checks:
# logging in through the form; another site's form (served on 127.0.0.2)
# posting to /logout leaves the user logged in; the sessions page names this
# browser; after logging out, Back shows the logged-out page (the logged-in
# one was sent with `Cache-Control: no-store` and is fetched again); another
# site's form posting to /login logs nobody in. Prints each check; exits
# non-zero when one fails. Stops the app and Chromium by PID, whatever
# happens; their logs stay in STATE_DIR. CI does not run it.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/.." && pwd)
LOG_NAME=browser-check
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

READY_TIMEOUT=60

state_dir=$(abs_dir "${1:-$repo_dir/target/browser-check}")
app_pid="$state_dir/login.pid"
browser_pid="$state_dir/chromium.pid"

cleanup() {
    stop_pid "$browser_pid" chromium
    stop_pid "$app_pid" examples/login
}
trap cleanup EXIT

ensure_command chromium
ensure_command python3
ensure_command curl

log "building the login example"
(cd "$repo_dir" && cargo build --example login >&2)
app_bin=$(cd "$repo_dir" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/examples/login
[ -x "$app_bin" ] || die "no $app_bin after the build"

app_port=$(free_port)
app="http://127.0.0.1:$app_port"
: >"$state_dir/login.log"
ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT=$app_port ROCKET_CLI_COLORS=false \
    spawn "$app_pid" "$state_dir/login.log" "$app_bin"
app_answers() { curl -sf -o /dev/null "$app/"; }
if ! wait_until "$READY_TIMEOUT" app_answers; then
    show_log "$state_dir/login.log"
    die "the login example does not answer on $app"
fi
log "the login example runs on $app (pid $(cat "$app_pid"))"

profile="$state_dir/profile"
rm -rf "$profile"
mkdir -p "$profile"
: >"$state_dir/chromium.log"
spawn "$browser_pid" "$state_dir/chromium.log" chromium \
    --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --no-first-run --no-default-browser-check --disable-extensions \
    --user-data-dir="$profile" --remote-debugging-address=127.0.0.1 \
    --remote-debugging-port=0 about:blank
devtools_ready() { [ -s "$profile/DevToolsActivePort" ]; }
if ! wait_until "$READY_TIMEOUT" devtools_ready; then
    show_log "$state_dir/chromium.log"
    die "chromium did not open its DevTools port"
fi
log "chromium runs (pid $(cat "$browser_pid"))"

status=0
python3 "$script_dir/browser_check.py" --app "$app" \
    --devtools-port-file "$profile/DevToolsActivePort" || status=$?
if [ "$status" -ne 0 ]; then
    show_log "$state_dir/login.log"
fi
exit "$status"
