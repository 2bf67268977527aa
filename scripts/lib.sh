# Shared shell functions for the scripts in this directory. Source it, do not
# run it:
#
#   script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
#   . "$script_dir/lib.sh"
#
# Nothing here writes to stdout: the server scripts keep stdout for the
# `export VAR=value` lines their callers evaluate. Messages go to stderr,
# prefixed by the calling script's name (its file name without `.sh`, or
# $LOG_NAME when set before sourcing).
#
#   log MESSAGE...                    a line on stderr
#   die MESSAGE...                    log "error: MESSAGE" and exit 1
#   show_log FILE [LINES]             the last LINES (30) lines of FILE on stderr
#   abs_dir DIR                       create DIR, print its absolute path
#   ensure_command CMD [DEB_PACKAGE]  install CMD from Debian when missing
#   is_running PID [PATTERN]          PID is alive (not a zombie) and its
#                                     command line contains PATTERN
#   spawn PIDFILE LOGFILE CMD...      start CMD in the background in its own
#                                     session, output to LOGFILE, PID to PIDFILE
#   stop_pid PIDFILE [PATTERN]        stop the process whose PID is in PIDFILE
#   wait_until TIMEOUT_SECONDS CMD... run CMD until it succeeds
#   free_port                         a free TCP port on 127.0.0.1
#   make_venv DIR PACKAGES...         a Python venv with exactly PACKAGES
#
# Settings (environment, read when the function runs):
#   STOP_TIMEOUT   seconds stop_pid waits after TERM before KILL (default 20)
#   WAIT_INTERVAL  seconds between two tries of wait_until (default 0.2)
#   VENV_PYTHON    the interpreter make_venv builds on (default python3)

# Guard against being sourced twice.
if [ -n "${KVSESSION_SCRIPTS_LIB:-}" ]; then
    return 0
fi
KVSESSION_SCRIPTS_LIB=1

LOG_NAME=${LOG_NAME:-$(basename "$0" .sh)}

log() { echo "$LOG_NAME: $*" >&2; }

die() {
    log "error: $*"
    exit 1
}

show_log() {
    local file=$1 lines=${2:-30}
    [ -f "$file" ] || return 0
    log "last lines of $file:"
    tail -n "$lines" "$file" >&2 || true
}

abs_dir() {
    [ -n "${1:-}" ] || die "abs_dir: no directory given"
    mkdir -p "$1" && (cd "$1" && pwd)
}

# Installs Debian packages, updating the package lists once if the first
# try fails (stale lists on a fresh machine). The servers' scripts run at the
# same time (scripts/test.sh starts them together) and apt-get without a
# terminal does not wait for Debian's package lock: the installs of these
# scripts take turns on a lock of their own, and apt-get waits up to 300 s
# for dpkg's lock when something else holds it.
apt_install() {
    local lock=${TMPDIR:-/tmp}/rocket-kvsession-apt.lock
    (
        flock -w 900 9 || {
            log "waited 900 s for another install to finish"
            exit 1
        }
        local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >&2 && exit 0
        apt-get -o DPkg::Lock::Timeout=300 -q update >&2 || true
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >&2
    ) 9>"$lock"
}

ensure_command() {
    local cmd=$1 package=${2:-$1}
    command -v "$cmd" >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || die "$cmd is missing and there is no apt-get to install it"
    [ "$(id -u)" = 0 ] || die "$cmd is missing; install it (Debian package $package) or run as root"
    log "installing $package from Debian"
    apt_install "$package" || die "cannot install $package"
    command -v "$cmd" >/dev/null 2>&1 || die "$package is installed but $cmd is still missing"
}

is_running() {
    local pid=${1:-} pattern=${2:-} state
    case "$pid" in
    '' | *[!0-9]*) return 1 ;;
    esac
    kill -0 "$pid" 2>/dev/null || return 1
    # A zombie (exited, not yet reaped by its parent) counts as stopped.
    state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ "$state" != Z ] || return 1
    [ -z "$pattern" ] && return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"
}

spawn() {
    local pid_file=$1 log_file=$2
    shift 2
    [ $# -gt 0 ] || die "spawn: no command given"
    # setsid: the process must not share the caller's process group, so that a
    # signal to the caller's group (Ctrl-C) does not reach it by surprise.
    setsid "$@" </dev/null >>"$log_file" 2>&1 &
    echo "$!" >"$pid_file"
}

stop_pid() {
    local pid_file=$1 pattern=${2:-} pid timeout=${STOP_TIMEOUT:-20} deadline
    [ -f "$pid_file" ] || return 0
    pid=$(cat "$pid_file" 2>/dev/null || true)
    # Only signal a live process that is still ours: a PID can be reused.
    if is_running "$pid" "$pattern"; then
        log "stopping pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + timeout))
        while is_running "$pid" && [ $SECONDS -lt $deadline ]; do
            sleep 0.1
        done
        if is_running "$pid"; then
            log "pid $pid did not stop within $timeout s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 5))
            while is_running "$pid" && [ $SECONDS -lt $deadline ]; do
                sleep 0.1
            done
            ! is_running "$pid" || log "pid $pid survived KILL"
        fi
    fi
    # Reap it when it is an exited child of this shell (does nothing otherwise).
    if [ -n "$pid" ] && ! is_running "$pid"; then
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
}

wait_until() {
    local timeout=$1 interval=${WAIT_INTERVAL:-0.2} deadline
    shift
    [ $# -gt 0 ] || die "wait_until: no command given"
    deadline=$((SECONDS + timeout))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep "$interval"
    done
}

free_port() {
    local python
    python=$(command -v python3 || command -v python) || die "free_port needs python3"
    "$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

make_venv() {
    local dir=$1 base=${VENV_PYTHON:-python3} stamp wanted
    shift
    [ -n "$dir" ] || die "make_venv: no directory given"
    stamp="$dir/.kvsession-packages"
    wanted=$(printf '%s\n' "$@")
    if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] &&
        "$dir/bin/python" -c '' 2>/dev/null; then
        return 0
    fi
    command -v "$base" >/dev/null 2>&1 || die "make_venv: $base not found"
    log "installing $* into $dir"
    rm -rf "$dir"
    "$base" -m venv "$dir" >&2 || die "cannot create a venv with $base (install python3-venv)"
    if [ $# -gt 0 ]; then
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2 ||
            die "pip install $* failed"
    fi
    printf '%s\n' "$wanted" >"$stamp"
}
