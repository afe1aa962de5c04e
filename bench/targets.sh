#!/usr/bin/env bash
# bench/targets.sh — every throughput and latency target of kanal's
# performance work, measured one after the other on this machine, each
# printed with its kanal-bench (or go test) command and its result:
#
#   1. direct, closed loop, 200 devices, sends on the stream: SQLite
#   2. the same on PostgreSQL + NATS
#   3. direct, open loop at half of 1's rate: SQLite
#   4. direct, open loop at half of 2's rate: PostgreSQL + NATS
#   5. direct, closed loop, sends over HTTP: SQLite and PostgreSQL + NATS
#   6. idle streams: 19,000 authenticated connections (memory per stream)
#   7. survey tokens: blind token issuance (go test benchmarks, then
#      TOKEN_CITIZENS citizens × TOKEN_SURVEYS surveys over HTTP, kanal-bench
#      -scenario tokens, on SQLite and on PostgreSQL + NATS)
#   8. broadcast to BROADCAST_DEVICES devices
#
# It prints how quick the host's cores were before the first run and after
# the last (hostspeed), since on a shared machine that changes within the
# hour. The targets it checks against are in docs/benchmarks.md ("The
# targets").
# Run it on a quiet machine: client and server share the cores, so anything
# else running changes every wall-clock figure. Takes about 20 minutes.
#
#   bench/targets.sh
#   POSTGRES=postgres://… NATS=nats://… bench/targets.sh
#   SKIP_PG=1 bench/targets.sh                  # SQLite only
set -euo pipefail
cd "$(dirname "$0")/.."

POSTGRES=${POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
NATS=${NATS:-nats://127.0.0.1:4222}
DURATION=${DURATION:-20s}
DEVICES=${DEVICES:-200}
IDLE_DEVICES=${IDLE_DEVICES:-19000}
BROADCAST_DEVICES=${BROADCAST_DEVICES:-5000}
TOKEN_CITIZENS=${TOKEN_CITIZENS:-500}
TOKEN_SURVEYS=${TOKEN_SURVEYS:-8}
WORK=$(mktemp -d /tmp/kanal-targets.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

go build -o "$WORK/kanal-bench" ./cmd/kanal-bench
go build -o "$WORK/kanald" ./cmd/kanald
go test -c -o "$WORK/surveys.test" ./surveys/

# hostspeed prints how long one RSA-2048 blind signature with CRT takes
# now (BenchmarkBlindSign/crt, one core): the reference docs/benchmarks.md
# quotes for how quick a machine's cores were. On a shared virtual
# machine it changes within the hour, so it is taken before the first run
# and after the last, and every figure between is read against both.
hostspeed() {
	(cd surveys && "$WORK/surveys.test" -test.run '^$' -test.bench 'BlindSign/crt$' -test.benchtime 300x 2>/dev/null) |
		awk '/^BenchmarkBlindSign\/crt/ {printf "BlindSign/crt %.2f ms", $3 / 1e6; found = 1} END {if (!found) printf "BlindSign/crt failed"}'
}

# bench NAME TARGET ARGS… runs kanal-bench with ARGS, prints the command and the
# table, and keeps the JSON result in $WORK/NAME.json.
bench() {
	local name=$1 target=$2
	shift 2
	echo
	echo "== $name (target: $target)"
	echo "\$ kanal-bench $*"
	"$WORK/kanal-bench" -kanald "$WORK/kanald" -json "$@" >"$WORK/$name.json" 2>"$WORK/$name.err" || {
		echo "failed:"
		tail -5 "$WORK/$name.err"
		return 0
	}
	"$WORK/kanal-bench" -summarize "$WORK/$name.json" | tail -1
	jq -r --arg n "$name" '"\($n): " + (if .scenario == "connections" then
		"\(.connections) streams, \(.server.kib_per_connection * 10 | round / 10) KiB each (RSS \(.server.rss_mib | round) MiB)"
	elif .scenario == "tokens" then
		"\(.delivered_per_s | round) tokens/s (\(.delivered) of \(.expected)), p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, \(.server.cpu_per_envelope_us // 0 | round) µs server CPU per token (\(.server.cpu_cores * 100 | round / 100) cores)"
	else
		"\(.delivered_per_s | round) delivered/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, \(.server.cpu_per_envelope_us // 0 | round) µs server CPU per envelope (\(.server.cpu_cores * 100 | round / 100) cores)"
		+ (if .broadcast_s > 0 then ", \(.delivered) devices in \(.broadcast_s * 100 | round / 100) s" else "" end)
	end) + ", errors \([.errors[]?] | add // 0), load \(.load_before) → \(.load_after)"' "$WORK/$name.json" | tee -a "$WORK/summary.txt"
}

# half NAME prints half of run NAME's closed-loop rate per device: in
# direct every device sends to one peer, so delivered/s = devices × rate.
half() {
	jq -r --argjson d "$DEVICES" '(.delivered_per_s / $d / 2 * 100 | floor) / 100' "$WORK/$1.json" 2>/dev/null || echo 1
}

# ratio HTTP STREAM prints what run HTTP's sends cost against run STREAM's:
# kanald's CPU per delivered envelope, the measure the target is set in
# (docs/benchmarks.md, "HTTP sends against stream sends"), and the
# delivered rates' ratio beside it, for the summary.
ratio() {
	[ -s "$WORK/$1.json" ] && [ -s "$WORK/$2.json" ] || return 0
	jq -rn --arg n "$1" --slurpfile h "$WORK/$1.json" --slurpfile s "$WORK/$2.json" \
		'"\($n): \(($h[0].server.cpu_per_envelope_us / $s[0].server.cpu_per_envelope_us * 100 | round) / 100)× the stream'"'"'s kanald CPU per envelope (target ≤ 1.5×), \(($s[0].delivered_per_s / $h[0].delivered_per_s * 100 | round) / 100)× its rate"' |
		tee -a "$WORK/summary.txt"
}

pg=(-database-url "$POSTGRES" -nats-url "$NATS")
if [ -n "${SKIP_PG:-}" ]; then pg=(); fi

echo "kanal targets, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), host speed: $(hostspeed)"

bench direct-sqlite "≥ 14,000 delivered/s, p50 ≤ 15 ms, 0 errors, ≤ 60 µs server CPU per envelope" -scenario direct -devices "$DEVICES" -rate 0 -transport ws -duration "$DURATION"
[ ${#pg[@]} -eq 0 ] || bench direct-pg "≥ 10,000 delivered/s, p50 ≤ 15 ms, 0 errors" -scenario direct -devices "$DEVICES" -rate 0 -transport ws -duration "$DURATION" "${pg[@]}"

bench half-sqlite "p99 < 50 ms" -scenario direct -devices "$DEVICES" -rate "$(half direct-sqlite)" -transport ws -duration "$DURATION"
[ ${#pg[@]} -eq 0 ] || bench half-pg "p99 < 50 ms" -scenario direct -devices "$DEVICES" -rate "$(half direct-pg)" -transport ws -duration "$DURATION" "${pg[@]}"

bench http-sqlite "within 1.5× of direct-sqlite" -scenario direct -devices "$DEVICES" -rate 0 -transport http -duration "$DURATION"
[ ${#pg[@]} -eq 0 ] || bench http-pg "within 1.5× of direct-pg" -scenario direct -devices "$DEVICES" -rate 0 -transport http -duration "$DURATION" "${pg[@]}"
ratio http-sqlite direct-sqlite
[ ${#pg[@]} -eq 0 ] || ratio http-pg direct-pg

bench idle "≤ 16 KiB per idle stream" -scenario connections -devices "$IDLE_DEVICES" -provision-workers 16 -duration 45s

echo
echo "== survey tokens (target: ≥ 1,000 tokens/s)"
echo "\$ go test -run '^\$' -bench 'TokenIssuance|BlindSign' -count 3 ./surveys/"
pgtest=$POSTGRES
if [ -n "${SKIP_PG:-}" ]; then pgtest=; fi
KANAL_TEST_POSTGRES=$pgtest go test -run '^$' -bench 'TokenIssuance|BlindSign' -count 3 ./surveys/ | grep -E '^Benchmark' || echo failed
bench tokens-sqlite "≥ 1,000 tokens/s" -scenario tokens -devices "$TOKEN_CITIZENS" -surveys "$TOKEN_SURVEYS" -duration 60s
[ ${#pg[@]} -eq 0 ] || bench tokens-pg "≥ 1,000 tokens/s" -scenario tokens -devices "$TOKEN_CITIZENS" -surveys "$TOKEN_SURVEYS" -duration 60s "${pg[@]}"

bench broadcast "50,000 devices in < 5 s" -scenario broadcast -devices "$BROADCAST_DEVICES"

echo
echo "== all runs"
cat "$WORK/summary.txt"
echo "host speed at the end, $(date -u '+%H:%M UTC'): $(hostspeed)"
