#!/usr/bin/env bash
# bench/profile.sh — where kanald spends its CPU in the direct scenario.
# Runs kanal-bench against a kanald it starts with its profiling endpoints
# on a loopback port (KANAL_PPROF_ADDR), takes a CPU profile of kanald
# during the middle of the measured phase, and prints go tool pprof's top
# functions by own CPU (flat) and including callees (cumulative).
#
#   bench/profile.sh                                 # SQLite
#   bench/profile.sh -database-url postgres://…      # extra kanal-bench flags
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${DEVICES:-200}
RATE=${RATE:-0}
DURATION=${DURATION:-30s}
PPROF=${PPROF:-127.0.0.1:6061}
WORK=$(mktemp -d /tmp/kanal-profile.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/kanal-bench" ./cmd/kanal-bench
go build -o "$WORK/kanald" ./cmd/kanald
KANAL_PPROF_ADDR=$PPROF "$WORK/kanal-bench" -kanald "$WORK/kanald" -devices "$DEVICES" -rate "$RATE" -duration "$DURATION" "$@" >"$WORK/result.txt" 2>"$WORK/stderr.txt" &
bench=$!
# Wait for kanald's profiling endpoint, then WARMUP seconds for
# provisioning and the sessions (about 10 s for 200 devices), so the
# profile covers the measured phase.
until curl -fsS "http://$PPROF/debug/pprof/" >/dev/null 2>&1; do
	kill -0 $bench 2>/dev/null || { cat "$WORK/stderr.txt" >&2; exit 1; }
	sleep 0.5
done
sleep "${WARMUP:-20}"
curl -fsS -o "$WORK/cpu.pprof" "http://$PPROF/debug/pprof/profile?seconds=${SECONDS_PROFILED:-10}"
wait $bench || true
cat "$WORK/result.txt"
echo
echo "flat (own CPU), top 25:"
go tool pprof -top -nodecount 25 "$WORK/kanald" "$WORK/cpu.pprof" 2>/dev/null | tail -n +6
echo
echo "cumulative (with callees), kanal's functions and the libraries on its path:"
go tool pprof -top -cum -nodecount 400 "$WORK/kanald" "$WORK/cpu.pprof" 2>/dev/null |
	grep -E 'kanal-server|fsync|net/http\.\(\*conn\)\.serve|nats-io|coder/websocket|encoding/json' | head -45 || true
