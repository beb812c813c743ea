#!/usr/bin/env bash
# Idle benchmark (issue 9): what the release daemon costs when nothing is
# due. It starts `target/release/keyrot run` in a temporary directory with
# KEYROT_IDLE_KEYS local-provider keys (their first keys are issued at
# start; then nothing is due for about 11 months), the inventory sync and
# the digest outside the window, no mail, and the unit's watchdog; waits until the
# start-up work is done, then measures over KEYROT_IDLE_SECONDS (default
# 600, the real figure; a shorter value gives a quick look):
#
#   - CPU time: utime + stime of the process (/proc/PID/stat);
#   - wake-ups: context switches of every thread, voluntary + involuntary
#     (/proc/PID/task/*/status), and the timeslices run (third field of
#     /proc/PID/task/*/schedstat), at the start and the end of the window,
#     per thread, so a thread that wakes shows by name.
#
# Targets: < 0.1 s CPU per 10 minutes, <= 1 wake-up per minute on average.
# Repeated KEYROT_IDLE_RUNS times (default 1: one 10-minute window;
# docs/benchmarks.md gives medians of 3), figures are medians.
# Prints a table and a final JSON line.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${KEYROT_IDLE_SECONDS:-600}"
keys="${KEYROT_IDLE_KEYS:-50}"
runs="${KEYROT_IDLE_RUNS:-1}"
settle="${KEYROT_IDLE_SETTLE:-15}"
# The daemon runs as under the unit: WATCHDOG_USEC from the unit's
# WatchdogSec (it pings at half of it) and NOTIFY_SOCKET bound here.
# KEYROT_IDLE_WATCHDOG=SECONDS sets another interval, =off runs without.
unit_watchdog() {
  local v
  v="$(sed -n 's/^WatchdogSec=//p' systemd/keyrot.service)"
  case "$v" in
    *min) echo $((${v%min} * 60)) ;;
    *s) echo "${v%s}" ;;
    *) echo "$v" ;;
  esac
}
watchdog="${KEYROT_IDLE_WATCHDOG:-$(unit_watchdog)}"
[[ "$watchdog" != off ]] || watchdog=""

cargo build --release --locked --bin keyrot >&2
bin="$PWD/target/release/keyrot"
tick="$(getconf CLK_TCK)"

dir="$(mktemp -d -t keyrot-idle-XXXXXX)"
pid=""
listener=""
cleanup() {
  if [[ -n "$listener" ]]; then
    kill "$listener" 2>/dev/null || true
  fi
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

# Nothing fires in the window: the sync runs at start and then on 1 January
# at 03:00 UTC, no digest, no notices (transport none), keys live a year
# and are due 30 days before they expire.
{
  cat <<'EOF'
[daemon]
control_socket = "control.sock"
sync_schedule = "0 0 3 1 JAN *"

[store]
path = "state/state.redb"
master_key_file = "master.key"
create_master_key = true

[notify]
transport = "none"

[[provider]]
name = "local"
type = "local"
max_concurrent = 16

[[sink]]
name = "out"
type = "file"
path = "out/{name}.json"
format = "json"

[[policy]]
name = "yearly"
new_key_lifetime = "365d"
rotate_before_expiry = "30d"
overlap = "0s"
jitter = false
EOF
  for i in $(seq 1 "$keys"); do
    printf '\n[[key]]\nname = "idle-%04d"\nprovider = "local"\npolicy = "yearly"\nsinks = ["out"]\n' "$i"
  done
} >"$dir/keyrot.toml"
mkdir -p "$dir/out"

# Context switches and timeslices of every thread: "TID NAME CTX SLICES".
threads() {
  local t name ctx slices
  for t in /proc/"$pid"/task/*; do
    name="$(cat "$t/comm" 2>/dev/null)" || continue
    ctx="$(awk '/^(non)?voluntary_ctxt_switches/ {n += $2} END {print n + 0}' "$t/status" 2>/dev/null)" || continue
    slices="$(awk '{print $3}' "$t/schedstat" 2>/dev/null)" || slices=0
    echo "${t##*/} ${name// /_} $ctx $slices"
  done
}

# utime + stime in clock ticks.
cpu_ticks() {
  # Field 2 (comm) may hold spaces: count from the closing parenthesis.
  sed 's/.*) //' /proc/"$pid"/stat | awk '{print $12 + $13}'
}

median() {
  sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

results=()
for run in $(seq 1 "$runs"); do
  rm -rf "$dir/state" "$dir/out"/* "$dir/master.key" "$dir/control.sock"
  env=(RUST_LOG=info)
  if [[ -n "$watchdog" ]]; then
    if [[ -z "$listener" ]]; then
      # The service manager's end of NOTIFY_SOCKET: reads and drops.
      python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    s.recv(4096)' "$dir/notify.sock" &
      listener=$!
      sleep 0.5
    fi
    env+=(NOTIFY_SOCKET="$dir/notify.sock" WATCHDOG_USEC="$((watchdog * 1000000))")
  fi
  (cd "$dir" && exec env "${env[@]}" "$bin" --config keyrot.toml run 2>"$dir/daemon.log") &
  pid=$!
  # Start-up work: the first sync binds the slots and issues every key.
  deadline=$((SECONDS + 300))
  until "$bin" --config "$dir/keyrot.toml" status --json 2>/dev/null \
    | jq -e --argjson n "$keys" \
      '([.keys[] | select(.key_id != null and .rotation_state == "completed")] | length) == $n and .active_rotations == 0' \
      >/dev/null; do
    if ((SECONDS > deadline)) || ! kill -0 "$pid" 2>/dev/null; then
      echo "idle: the daemon did not finish its start-up work" >&2
      tail -20 "$dir/daemon.log" >&2
      exit 1
    fi
    sleep 1
  done
  # Let the blocking-pool threads time out (10 s idle) and any settle
  # timer fire before the window opens.
  sleep "$settle"
  before_threads="$(threads)"
  before_cpu="$(cpu_ticks)"
  before_log="$(wc -l <"$dir/daemon.log")"
  sleep "$seconds"
  after_threads="$(threads)"
  after_cpu="$(cpu_ticks)"
  after_log="$(wc -l <"$dir/daemon.log")"

  # Per thread: the switches and timeslices in the window (threads that
  # appeared count from zero; threads that ended are listed as gone, their
  # last counts unknown).
  per_thread="$(join -a 1 -a 2 -e 0 -o 0,1.2,2.2,1.3,2.3,1.4,2.4 \
    <(sort -k1,1 <<<"$before_threads") <(sort -k1,1 <<<"$after_threads") \
    | awk '$3 == "0" {printf "%s %s(gone) 0 0\n", $1, $2; next}
           {printf "%s %s %d %d\n", $1, $3, $5 - $4, $7 - $6}')"
  wakeups="$(awk '{n += $3} END {print n + 0}' <<<"$per_thread")"
  slices="$(awk '{n += $4} END {print n + 0}' <<<"$per_thread")"
  cpu="$(awk -v a="$before_cpu" -v b="$after_cpu" -v t="$tick" 'BEGIN {printf "%.3f", (b - a) / t}')"
  per_min="$(awk -v n="$wakeups" -v s="$seconds" 'BEGIN {printf "%.2f", n * 60 / s}')"
  cpu_10min="$(awk -v c="$cpu" -v s="$seconds" 'BEGIN {printf "%.3f", c * 600 / s}')"
  echo "run $run: ${cpu}s CPU, $wakeups context switches ($slices timeslices) in ${seconds}s; $((after_log - before_log)) log lines" >&2
  echo "  per thread (tid name switches timeslices):" >&2
  sed 's/^/    /' <<<"$per_thread" >&2
  results+=("$cpu $cpu_10min $wakeups $per_min $slices")

  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
done

col() { printf '%s\n' "${results[@]}" | awk -v c="$1" '{print $c}' | median; }
cpu="$(col 1)"
cpu_10min="$(col 2)"
wakeups="$(col 3)"
per_min="$(col 4)"
slices="$(col 5)"

printf '\n%-44s %14s  %s\n' "figure (median of $runs)" value target
printf '%-44s %14s  %s\n' "window (s)" "$seconds" ""
printf '%-44s %14s  %s\n' "keys" "$keys" ""
printf '%-44s %14s  %s\n' "watchdog (WatchdogSec)" "${watchdog:-off}" ""
printf '%-44s %14s  %s\n' "CPU in the window (s)" "$cpu" ""
printf '%-44s %14s  %s\n' "CPU per 10 minutes (s)" "$cpu_10min" "< 0.1"
printf '%-44s %14s  %s\n' "context switches in the window" "$wakeups" ""
printf '%-44s %14s  %s\n' "wake-ups per minute" "$per_min" "<= 1"
printf '%-44s %14s  %s\n' "timeslices in the window" "$slices" ""
runs_json="$(printf '%s\n' "${results[@]}" | jq -R -s -c 'split("\n") | map(select(length > 0) | split(" ") | {cpu_s: (.[0] | tonumber), wakeups: (.[2] | tonumber), timeslices: (.[4] | tonumber)})')"
jq -n -c --argjson seconds "$seconds" --argjson keys "$keys" --argjson cpu "$cpu" \
  --arg watchdog "${watchdog:-off}" \
  --argjson cpu10 "$cpu_10min" --argjson wakeups "$wakeups" --argjson per_min "$per_min" \
  --argjson slices "$slices" --argjson runs "$runs_json" \
  '{bench: "idle", seconds: $seconds, keys: $keys, watchdog: $watchdog, cpu_s: $cpu, cpu_per_10min_s: $cpu10,
    wakeups: $wakeups, wakeups_per_min: $per_min, timeslices: $slices, runs: $runs}'
