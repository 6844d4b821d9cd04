#!/usr/bin/env bash
# Request throughput of the TypeScript client against the Go client on the same server:
# one server, one Go echo responder, then for each round a Go load and a TypeScript load
# (N requests in flight on one connection each, D seconds) in turn.
#
#   clients/node/bench/run.sh [CONCURRENCY] [SECONDS] [ROUNDS] [SIZE]    (defaults 64 10 3 64)
#
# Run from anywhere; builds bin/switchboard, the Go load generator and the TypeScript client.
set -euo pipefail
cd "$(dirname "$0")/../../.."
conc=${1:-64}
secs=${2:-10}
rounds=${3:-3}
size=${4:-64}

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

make -s build node-build >/dev/null
go build -o "$tmp/gobench" ./clients/node/bench/gobench

bin/switchboard serve --listen 127.0.0.1:0 --admin off --log-format json 2>"$tmp/server.log" &
pids+=($!)
addr=
for _ in $(seq 100); do
	addr=$(sed -n 's/.*"msg":"switchboard listening","addr":"\([^"]*\)".*/\1/p' "$tmp/server.log")
	[ -n "$addr" ] && break
	sleep 0.1
done
[ -n "$addr" ] || { echo "server did not start" >&2; cat "$tmp/server.log" >&2; exit 1; }

mkfifo "$tmp/responder.in"
"$tmp/gobench" responder --addr "$addr" --name echo <"$tmp/responder.in" >"$tmp/responder.out" &
pids+=($!)
exec 3>"$tmp/responder.in" # keeps the responder running until this script exits
for _ in $(seq 100); do
	grep -q ready "$tmp/responder.out" 2>/dev/null && break
	sleep 0.1
done

echo "# server $addr; $conc requests in flight, ${secs}s, $size-byte payloads, $rounds rounds" >&2
for r in $(seq "$rounds"); do
	"$tmp/gobench" load --addr "$addr" --name echo --concurrency "$conc" --duration "${secs}s" --size "$size"
	node clients/node/bench/bench.mjs --addr "$addr" --name echo --concurrency "$conc" --duration "$secs" --size "$size"
done
