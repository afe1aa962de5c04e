#!/usr/bin/env bash
# bench/compare.sh — kanal side by side with raw NATS core pub/sub and
# Prosody (XMPP), the same "direct" workload against each in one run:
# DEVICES devices in pairs, each sending SIZE-byte messages to its peer at
# RATE per second (0: as fast as it can) for DURATION.
#
# From a fresh clone: installs Prosody from the distribution's package
# registry (apt) if it is missing, builds kanal-bench and kanald, starts a
# private Prosody (own config, data directory and loopback port, run as an
# unprivileged user) and, if no NATS server answers on NATS_URL, a private
# nats-server built from go.mod's module. Everything it starts, it stops.
#
#   bench/compare.sh                      # defaults below
#   DEVICES=400 RATE=0 DURATION=30s bench/compare.sh
#   KANAL_BENCH_POSTGRES=postgres://… bench/compare.sh   # also kanal on PostgreSQL + NATS
#   KANAL_BENCH_POSTGRES=postgres://… NODES=2 NATS_PRIVATE=1 bench/compare.sh
#
# kanal's devices send on their stream (TRANSPORT=ws), as the SDK does and
# as docs/benchmarks.md's targets are measured; TRANSPORT=http sends with
# POST /v1/messages. The PostgreSQL run uses the same NATS server as the
# NATS run, with NODES kanald nodes. NATS_PRIVATE=1 starts a private
# nats-server even if one answers on NATS_URL, so that its CPU figure is
# the benchmark's alone.
#
# Besides each system's -json result, OUT gets summary.md: the commit, the
# machine, the command and the figures in docs/benchmarks.md's table
# format, ready to paste under "Side by side: kanal, NATS core, Prosody".
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=${DEVICES:-200}
RATE=${RATE:-0}
DURATION=${DURATION:-20s}
SIZE=${SIZE:-256}
TRANSPORT=${TRANSPORT:-ws}
NODES=${NODES:-1}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
NATS_PRIVATE=${NATS_PRIVATE:-0}
XMPP_PORT=${XMPP_PORT:-15222}
OUT=${OUT:-$(mktemp -d /tmp/kanal-compare.XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/kanal-compare-run.XXXXXX)
PIDS=""

cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $PIDS; do
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# 1. The peer server, from the package registry.
if ! command -v prosody >/dev/null 2>&1; then
	echo "compare: installing prosody from apt" >&2
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prosody >/dev/null
fi

# 2. kanal-bench, kanald, and (if needed) nats-server, from this checkout.
go build -o "$WORK/kanal-bench" ./cmd/kanal-bench
go build -o "$WORK/kanald" ./cmd/kanald

# 3. NATS: the local server if one answers (and NATS_PRIVATE is not set),
# else a private one: the nats-server on PATH, or one built from go.mod's
# module.
nats_host=$(echo "$NATS_URL" | sed -e 's|^nats://||' -e 's|:.*||')
nats_port=$(echo "$NATS_URL" | sed -e 's|.*:||')
if [ "$NATS_PRIVATE" != 1 ] && (exec 3<>"/dev/tcp/$nats_host/$nats_port") 2>/dev/null; then
	NATS_PID=$(ss -ltnpH "sport = :$nats_port" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
	nats_server="the NATS server already on $NATS_URL (its CPU includes any other traffic it carried)"
else
	nats_bin=$(command -v nats-server || true)
	if [ -z "$nats_bin" ]; then
		go build -o "$WORK/nats-server" github.com/nats-io/nats-server/v2
		nats_bin="$WORK/nats-server"
	fi
	nats_port=14222
	NATS_URL="nats://127.0.0.1:$nats_port"
	echo "compare: starting a private nats-server ($nats_bin) on $NATS_URL" >&2
	"$nats_bin" -a 127.0.0.1 -p $nats_port >"$WORK/nats.log" 2>&1 &
	NATS_PID=$!
	PIDS="$PIDS $NATS_PID"
	i=0
	until (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then
			echo "compare: nats-server did not start:" >&2
			cat "$WORK/nats.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	nats_server="a private $("$nats_bin" --version 2>/dev/null | head -1 || echo nats-server)"
fi

# 4. A private Prosody: own config, data and port, not the system's.
mkdir -p "$WORK/prosody/data"
sed -e "s|@DIR@|$WORK/prosody|g" -e "s|@PORT@|$XMPP_PORT|g" bench/prosody.cfg.lua.in >"$WORK/prosody/prosody.cfg.lua"
if [ "$(id -u)" = 0 ]; then
	# Never as root: as the package's own user, or nobody.
	user=prosody
	id "$user" >/dev/null 2>&1 || user=nobody
	chown -R "$user" "$WORK/prosody"
	chmod o+x "$WORK"
	setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
		prosody --config "$WORK/prosody/prosody.cfg.lua" >"$WORK/prosody/stdout" 2>&1 &
else
	prosody --config "$WORK/prosody/prosody.cfg.lua" >"$WORK/prosody/stdout" 2>&1 &
fi
PROSODY_PID=$!
PIDS="$PIDS $PROSODY_PID"
i=0
until (exec 3<>"/dev/tcp/127.0.0.1/$XMPP_PORT") 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then
		echo "compare: prosody did not start:" >&2
		cat "$WORK/prosody/stdout" "$WORK/prosody/prosody.log" >&2 2>/dev/null || true
		exit 1
	fi
	sleep 0.1
done

common="-devices $DEVICES -rate $RATE -duration $DURATION -size $SIZE"
echo "compare: $common; results in $OUT" >&2
started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# 5. The same workload against each, one after the other.
"$WORK/kanal-bench" -kanald "$WORK/kanald" $common -transport "$TRANSPORT" -json -plot "$OUT/kanal-sqlite.svg" >"$OUT/1-kanal-sqlite.json"
if [ -n "${KANAL_BENCH_POSTGRES:-}" ]; then
	"$WORK/kanal-bench" -kanald "$WORK/kanald" $common -transport "$TRANSPORT" -nodes "$NODES" \
		-database-url "$KANAL_BENCH_POSTGRES" -nats-url "$NATS_URL" -json >"$OUT/2-kanal-postgres.json"
fi
"$WORK/kanal-bench" -peer nats -peer-url "$NATS_URL" -pid "${NATS_PID:-0}" $common -json >"$OUT/3-nats.json"
"$WORK/kanal-bench" -peer xmpp -peer-url "127.0.0.1:$XMPP_PORT" -pid "$PROSODY_PID" $common -json >"$OUT/4-prosody.json"

# 6. One table, and summary.md for docs/benchmarks.md.
"$WORK/kanal-bench" -summarize "$OUT"/[0-9]-*.json
prosody_version=$(dpkg-query -W -f '${Version}' prosody 2>/dev/null || prosodyctl about 2>/dev/null | sed -n 's/^Prosody *//p' | head -1 || true)
{
	echo "bench/compare.sh at \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)'), $started:"
	echo "$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB;"
	echo "load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end;"
	echo "NATS: $nats_server; Prosody ${prosody_version:-(version unknown)}."
	echo
	echo '```'
	echo "DEVICES=$DEVICES RATE=$RATE DURATION=$DURATION SIZE=$SIZE TRANSPORT=$TRANSPORT NODES=$NODES NATS_PRIVATE=$NATS_PRIVATE${KANAL_BENCH_POSTGRES:+ KANAL_BENCH_POSTGRES=…} bench/compare.sh"
	echo '```'
	echo
	"$WORK/kanal-bench" -summarize -docs "$OUT"/[0-9]-*.json
} >"$OUT/summary.md"
echo "compare: $OUT/summary.md" >&2
