#!/usr/bin/env bash
# bench/syscalls.sh — kanald's system calls and CPU per delivered envelope
# in the direct scenario. Starts kanal-bench (which starts kanald), waits
# for the measured phase, then counts over two windows of WIN seconds:
#   A: kanald's CPU (/proc/<pid>/stat) and read/write calls (/proc/<pid>/io)
#      with nothing attached;
#   B: every system call by kind, with perf stat on the syscall tracepoints,
#      and kanald's context switches and the wake-ups it issues (counted in
#      the kernel; needs root or perf_event_paranoid <= -1).
# Each is divided by the envelopes kanald wrote to streams in the window
# (kanal_stream_envelopes_total from /metrics); window A also counts the
# group commits (kanal_group_commit_batches_total).
#
#   bench/syscalls.sh [kanald-binary [kanal-bench-binary]] [-- extra kanal-bench flags]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/kanal-syscalls.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
kd=${1:-}; kb=${2:-}
shift $(( $# < 2 ? $# : 2 )) || true
[ "${1:-}" = "--" ] && shift
if [ -z "$kd" ]; then go build -o "$WORK/kanald" ./cmd/kanald; kd=$WORK/kanald; fi
if [ -z "$kb" ]; then go build -o "$WORK/kanal-bench" ./cmd/kanal-bench; kb=$WORK/kanal-bench; fi
WIN=${WIN:-6}
"$kb" -kanald "$kd" -json -scenario direct -devices "${DEVICES:-100}" -rate 0 -transport ws -duration "${DURATION:-40s}" "$@" >"$WORK/result.json" 2>"$WORK/stderr" &
bench=$!
kpid=""
for _ in $(seq 1 200); do kpid=$(pgrep -P $bench -x "$(basename "$kd" | cut -c1-15)" | head -1 || true); [ -n "$kpid" ] && break; sleep 0.3; done
[ -n "$kpid" ] || { cat "$WORK/stderr" >&2; exit 1; }
addr=$(tr '\0' '\n' </proc/$kpid/environ | sed -n 's/^KANAL_ADDR=//p')
# Until kanald listens, curl fails and envs prints nothing (not a failure
# of the script: set -e would end it silently at the first poll).
envs() { { curl -fsS "http://$addr/metrics" 2>/dev/null || true; } | awk '/^kanal_stream_envelopes_total/ {s+=$2} END {if (NR) printf "%d", s}'; }
commits() { { curl -fsS "http://$addr/metrics" 2>/dev/null || true; } | awk '/^kanal_group_commit_batches_total/ {printf "%d", $2}'; }
cpu() { awk '{print $14+$15}' /proc/$kpid/stat; }
io() { awk '/syscr|syscw/ {printf "%s ", $2}' /proc/$kpid/io; }
# The measured phase: envelopes flowing.
n=""
while kill -0 $bench 2>/dev/null; do n=$(envs); [ -n "$n" ] && [ "$n" -gt 2000 ] && break; sleep 0.5; done
[ -n "$n" ] && [ "$n" -gt 2000 ] || { echo "kanal-bench ended before the measured phase:" >&2; cat "$WORK/stderr" >&2; exit 1; }
sleep 3
load=$(cut -d' ' -f1 /proc/loadavg)
e0=$(envs); c0=$(cpu); b0=$(commits); read -r r0 w0 <<<"$(io)"
sleep "$WIN"
e1=$(envs); c1=$(cpu); b1=$(commits); read -r r1 w1 <<<"$(io)"
ev=raw_syscalls:sys_enter
for s in futex nanosleep epoll_pwait writev write pwrite64 read pread64 fcntl fsync; do ev=$ev,syscalls:sys_enter_$s; done
# A thread's switches off its core (mostly to wait: a futex, epoll), and
# the wake-ups kanald's threads issue (to its own threads, and to the
# readers of the sockets it writes).
ev=$ev,context-switches,sched:sched_waking
e2=$(envs)
perf stat -x, -e "$ev" -p "$kpid" -o "$WORK/perf.txt" -- sleep "$WIN" 2>/dev/null
e3=$(envs)
wait $bench || true
ea=$((e1 - e0)); eb=$((e3 - e2))
tck=$(getconf CLK_TCK)
echo "load average $load -> $(cut -d' ' -f1 /proc/loadavg)"
echo "window A: $ea envelopes; kanald CPU $(( (c1 - c0) * 1000000 / tck / ea )) µs per envelope; read calls $(echo "scale=2; ($r1-$r0)/$ea" | bc), write calls $(echo "scale=2; ($w1-$w0)/$ea" | bc) per envelope"
echo "window A: $((b1 - b0)) group commits, $(echo "scale=1; $ea/($b1-$b0)" | bc) envelopes per commit"
echo "window B: $eb envelopes; system calls per envelope:"
awk -F, -v n="$eb" '/sys_enter/ {sub(/.*:sys_enter_?/, "", $3); printf "  %-12s %8.2f\n", ($3 == "" ? "all" : $3), $1 / n}' "$WORK/perf.txt"
echo "window B: threads switched off a core and wake-ups issued, per envelope:"
awk -F, -v n="$eb" '/context-switches|sched_waking/ {sub(/.*:/, "", $3); printf "  %-16s %8.2f\n", $3, $1 / n}' "$WORK/perf.txt"
