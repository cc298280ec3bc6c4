# shellcheck shell=bash disable=SC2034  # (CLK_TCK is for the scripts that source it)
# Shared by the bench/ scripts that measure running processes: the machine
# line of a result table, CPU time and peak memory read from /proc, and
# stopping by PID. Source it after scripts/lib/common.sh.

CLK_TCK=$(getconf CLK_TCK)

# machine: "2 cores, AMD EPYC" (what the table's numbers were measured on).
machine() {
  local model
  model=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)
  printf '%s cores, %s' "$(nproc)" "${model:-unknown CPU}"
}

# table_header TITLE: a Markdown heading with the date and the machine.
table_header() {
  printf '\n### %s\n\n%s, %s; kernel %s.\n\n' "$1" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(machine)" "$(uname -r)"
}

# descendants PID: the PIDs of PID's children, grandchildren, …
descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}

# cpu_ticks PID...: utime + stime of these processes, in clock ticks
# (CLK_TCK a second). A process that is gone counts 0.
cpu_ticks() {
  local pid stat total=0
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    # The command name may hold spaces and parentheses: fields are counted
    # after its closing parenthesis (state is field 3, utime 14, stime 15).
    read -r -a fields <<< "${stat##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}

# tree_ticks PID: cpu_ticks of PID and all its descendants.
tree_ticks() {
  # shellcheck disable=SC2046  # one PID a word
  cpu_ticks "$1" $(descendants "$1")
}

# hwm_kib PID: the process's peak resident set (VmHWM), in KiB.
hwm_kib() {
  sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB$/\1/p' "/proc/$1/status" 2>/dev/null || echo 0
}

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [[ ${stat##*) } != Z* ]]
}

# stop_pid PID [SIGNAL [GRACE_SECONDS]]: signal one child of this shell,
# SIGKILL it if it is still there after the grace, and reap it.
stop_pid() {
  local pid=$1 signal=${2:-TERM} grace=${3:-20} waited=0
  alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -"$signal" "$pid" 2>/dev/null || true
  while alive "$pid" && ((waited < grace * 10)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  alive "$pid" && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}

# warn_other_captures: a warning if some other tcpdump is running (another
# capture on the same machine disturbs the figures, and two tcpdumps
# closing their sockets at once can stall in the kernel).
warn_other_captures() {
  local others
  others=$(pgrep -x tcpdump | tr '\n' ' ' || true)
  [[ -z $others ]] || say "warning: other tcpdump processes are running (pids $others); the figures may be disturbed"
}

# wait_for_file GLOB PID LOG: until a file matches GLOB (the capture has
# started); fails with LOG if PID exits first or nothing comes in 30 s.
wait_for_file() {
  local glob=$1 pid=$2 log=$3 waited=0
  until compgen -G "$glob" >/dev/null; do
    alive "$pid" || { tail -20 "$log" >&2; fail "process $pid exited before writing $glob (log above)"; }
    ((waited++ < 300)) || { tail -20 "$log" >&2; fail "nothing matched $glob within 30 s"; }
    sleep 0.1
  done
}

# NUMBERED: the test-support crate's `numbered` binary (numbered UDP traffic,
# its strict census, synthetic captures), the same code the Rust tests use.
# build_numbered builds it (release).
NUMBERED=${CARGO_TARGET_DIR:-$ROOT/target}/release/numbered
build_numbered() { (cd "$ROOT" && cargo build -q --release --locked -p test-support --bin numbered); }

# json_field NAME: one field of the JSON object on stdin.
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# peak_mib LOG: GNU time -v's peak RSS, in MiB.
peak_mib() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }
# wall_s LOG: GNU time -v's elapsed time, in seconds.
wall_s() {
  awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0
    for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$1"
}
