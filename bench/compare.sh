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
#   KANAL_BENCH_POSTGRES=postgres://… bench/compare.sh   # also kanal on PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=${DEVICES:-200}
RATE=${RATE:-0}
DURATION=${DURATION:-20s}
SIZE=${SIZE:-256}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
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

# 3. NATS: the local server if one answers, else a private one.
nats_host=$(echo "$NATS_URL" | sed -e 's|^nats://||' -e 's|:.*||')
nats_port=$(echo "$NATS_URL" | sed -e 's|.*:||')
if (exec 3<>"/dev/tcp/$nats_host/$nats_port") 2>/dev/null; then
	NATS_PID=$(ss -ltnpH "sport = :$nats_port" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
else
	echo "compare: no NATS at $NATS_URL; starting a private nats-server" >&2
	go build -o "$WORK/nats-server" github.com/nats-io/nats-server/v2
	nats_port=14222
	NATS_URL="nats://127.0.0.1:$nats_port"
	"$WORK/nats-server" -a 127.0.0.1 -p $nats_port >"$WORK/nats.log" 2>&1 &
	NATS_PID=$!
	PIDS="$PIDS $NATS_PID"
	sleep 1
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

# 5. The same workload against each, one after the other.
"$WORK/kanal-bench" -kanald "$WORK/kanald" $common -json -plot "$OUT/kanal-sqlite.svg" >"$OUT/kanal-sqlite.json"
if [ -n "${KANAL_BENCH_POSTGRES:-}" ]; then
	"$WORK/kanal-bench" -kanald "$WORK/kanald" $common -database-url "$KANAL_BENCH_POSTGRES" -json >"$OUT/kanal-postgres.json"
fi
"$WORK/kanal-bench" -peer nats -peer-url "$NATS_URL" -pid "${NATS_PID:-0}" $common -json >"$OUT/nats.json"
"$WORK/kanal-bench" -peer xmpp -peer-url "127.0.0.1:$XMPP_PORT" -pid "$PROSODY_PID" $common -json >"$OUT/prosody.json"

# 6. One table.
"$WORK/kanal-bench" -summarize "$OUT"/*.json
