#!/usr/bin/env bash
# bench/overload.sh — the overload claim, on both engines: kanal-bench
# -scenario overload finds kanald's maximum with a closed loop, drives it
# at FACTOR times that for DURATION, then waits until every device has
# every envelope whose send was answered "sent". Lost must be 0, and every
# device must catch up (docs/benchmarks.md, "overload: twice the maximum
# for 30 s"). One run on SQLite, one on PostgreSQL + NATS with NODES nodes.
#
#   bench/overload.sh
#   POSTGRES=postgres://… NATS=nats://… NODES=2 bench/overload.sh
#   SKIP_PG=1 bench/overload.sh                 # SQLite only
#
# OUT gets each run's -json result and latency plot, and summary.md: the
# commit, the machine, the commands and the figures in the overload
# table's columns. It exits non-zero if any acknowledged send was lost or
# a device did not catch up.
set -euo pipefail
cd "$(dirname "$0")/.."

POSTGRES=${POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
NATS=${NATS:-nats://127.0.0.1:4222}
NODES=${NODES:-2}
DURATION=${DURATION:-30s}
FACTOR=${FACTOR:-2}
OUT=${OUT:-$(mktemp -d /tmp/kanal-overload.XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/kanal-overload-run.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

go build -o "$WORK/kanal-bench" ./cmd/kanal-bench
go build -o "$WORK/kanald" ./cmd/kanald

started=$(date -u '+%Y-%m-%d %H:%M UTC')
common="-scenario overload -duration $DURATION -overload $FACTOR"
runs=("1-sqlite|")
[ -n "${SKIP_PG:-}" ] || runs+=("2-postgres|-nodes $NODES -database-url $POSTGRES -nats-url $NATS")
cmds=""
for run in "${runs[@]}"; do
	name=${run%%|*}
	args=${run#*|}
	echo "overload: $name: kanal-bench $common $args" >&2
	# shellcheck disable=SC2086
	"$WORK/kanal-bench" -kanald "$WORK/kanald" $common $args -json -plot "$OUT/overload-$name.svg" >"$OUT/overload-$name.json"
	cmds="$cmds
kanal-bench $common $args"
done

"$WORK/kanal-bench" -summarize "$OUT"/overload-*.json
{
	echo "bench/overload.sh at \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)'), $started:"
	echo "$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB."
	echo
	echo '```'"$cmds"
	echo '```'
	echo
	"$WORK/kanal-bench" -summarize "$OUT"/overload-*.json
} >"$OUT/summary.md"
echo "overload: $OUT/summary.md" >&2

# The claim itself: nothing acknowledged lost, every device caught up.
fail=0
for f in "$OUT"/overload-*.json; do
	if ! grep -q '"lost": 0,' "$f" || ! grep -q '"caught_up": true' "$f"; then
		echo "overload: $f: an acknowledged send was lost or a device did not catch up" >&2
		fail=1
	fi
done
exit $fail
