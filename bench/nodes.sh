#!/usr/bin/env bash
# bench/nodes.sh — does adding a kanald node keep each node's cost per
# envelope? The direct workload (DEVICES devices in pairs, closed loop,
# sends on the stream) on PostgreSQL + NATS with each node count of NODES,
# ROUNDS times, alternating (1 2 3 1 2 3 …) so that a change in the
# machine's load falls on every count alike. Devices are spread over the
# nodes in turn and pairs are neighbours, so past one node every envelope
# crosses from its sender's node to its recipient's through NATS.
#
# On a machine whose cores the nodes, PostgreSQL, NATS and the load
# generator share, the delivered rate says nothing about scaling; the CPU
# per delivered envelope does: all nodes together, each node's share, and
# the nodes' PostgreSQL backends (docs/scaling.md).
#
# With PER_NODE and RATE set, the load grows with the nodes instead: each
# node has PER_NODE devices sending RATE messages a second each (open
# loop), so every node carries the same load whatever their number, as in
# a cluster that grows with its city. Then each node's CPU per envelope
# says whether adding a node lowers what a node can carry.
#
#   bench/nodes.sh
#   POSTGRES=postgres://… NATS=nats://… NODES="1 2 3" ROUNDS=3 bench/nodes.sh
#   PER_NODE=200 RATE=3 bench/nodes.sh
#
# OUT gets each run's -json result and summary.md (the commit, the
# machine, the command, one table row per run).
set -euo pipefail
cd "$(dirname "$0")/.."

POSTGRES=${POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
NATS=${NATS:-nats://127.0.0.1:4222}
NODES=${NODES:-1 2 3}
ROUNDS=${ROUNDS:-3}
DEVICES=${DEVICES:-200}
PER_NODE=${PER_NODE:-}
RATE=${RATE:-0}
DURATION=${DURATION:-20s}
OUT=${OUT:-$(mktemp -d /tmp/kanal-nodes.XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/kanal-nodes-run.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

go build -o "$WORK/kanal-bench" ./cmd/kanal-bench
go build -o "$WORK/kanald" ./cmd/kanald

started=$(date -u '+%Y-%m-%d %H:%M UTC')
common="-scenario direct -transport ws -rate $RATE -duration $DURATION -database-url $POSTGRES -nats-url $NATS"
devices() { if [ -n "$PER_NODE" ]; then echo $(($1 * PER_NODE)); else echo "$DEVICES"; fi; }
files=()
for round in $(seq 1 "$ROUNDS"); do
	for n in $NODES; do
		f="$OUT/nodes-$n-round-$round.json"
		echo "nodes: round $round, $n node(s), $(devices "$n") devices" >&2
		# shellcheck disable=SC2086
		"$WORK/kanal-bench" -kanald "$WORK/kanald" $common -devices "$(devices "$n")" -nodes "$n" -json >"$f"
		files+=("$f")
	done
done

{
	echo "bench/nodes.sh at \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)'), $started:"
	echo "$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB; rows in the order run, node counts alternating."
	echo
	echo '```'
	if [ -n "$PER_NODE" ]; then
		echo "kanal-bench $common -devices $PER_NODE×N -nodes N     # N in $NODES, $ROUNDS rounds"
	else
		echo "kanal-bench $common -devices $DEVICES -nodes N     # N in $NODES, $ROUNDS rounds"
	fi
	echo '```'
	echo
	"$WORK/kanal-bench" -summarize -docs "${files[@]}"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "nodes: $OUT/summary.md" >&2
