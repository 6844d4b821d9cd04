#!/usr/bin/env bash
# make loadtest: the standard benchmark set of docs/BENCHMARKS.md, against servers this
# script starts on loopback and stops. Results (JSON, SVG plots, logs) go to results/
# (git-ignored). Every run is bounded in time and stops by itself.
#
#   scripts/loadtest.sh [quick]     quick: shorter durations and fewer connections
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/switchboard}
OUT=${OUT:-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
DUR=10s; CONNS_IDLE=15000; CONNS_PROCS=30000
if [ "${1:-}" = quick ]; then DUR=3s; CONNS_IDLE=2000; CONNS_PROCS=4000; fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start NAME PORT [serve flags...]: start a server, wait for its listening line.
start() {
	local name=$1 port=$2; shift 2
	"$BIN" serve --listen "127.0.0.1:$port" --admin "127.0.0.1:$((port + 1))" "$@" >"$OUT/$name.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do grep -q "switchboard listening" "$OUT/$name.log" && return 0; sleep 0.1; done
	echo "server $name did not start; see $OUT/$name.log" >&2
	exit 1
}
pid_of() { pgrep -f -- "serve --listen 127.0.0.1:$1 " | head -1; }
bench() { local name=$1; shift; echo "== $name" >&2; "$BIN" bench "$@" --json "$OUT/$name.json" --plot "$OUT/$name.svg" | tee "$OUT/$name.txt"; }

echo "results in $OUT" >&2
{ date -u; uname -srm; nproc; go version; git rev-parse --short HEAD; } >"$OUT/machine.txt"

start a 17400
A=$(pid_of 17400)
bench connect-idle connect --addr 127.0.0.1:17400 --conns "$CONNS_IDLE" --duration 5s --server-pid "$A"
bench echo-floor echo --addr 127.0.0.1:17400 --conns 50 --pipeline 16 --duration "$DUR" --floor --server-pid "$A"
bench route-send route --addr 127.0.0.1:17400 --conns 50 --pipeline 16 --duration "$DUR" --server-pid "$A"
bench route-request route --mode request --addr 127.0.0.1:17400 --conns 50 --pipeline 16 --duration "$DUR" --server-pid "$A"
# Latency at half of the pipelined echo maximum just measured.
MAX=$(sed -n 's/.*"throughput_msgs_per_s": *\([0-9.]*\).*/\1/p' "$OUT/echo-floor.json" | head -1)
HALF=$(awk -v m="$MAX" 'BEGIN { printf "%d", m / 2 }')
bench echo-half-load echo --addr 127.0.0.1:17400 --conns 50 --rate "$HALF" --duration "$DUR" --server-pid "$A"
kill -INT "$A"; wait "$A" 2>/dev/null || true

# Overload: a node with real limits, driven at several times its capacity.
start o 17410 --max-connections 1000 --conn-msg-rate 2000 --node-msg-rate 200000 --max-queue 20000
bench overload overload --addr 127.0.0.1:17410 --conns 3000 --duration "$DUR" --server-pid "$(pid_of 17410)"

# More connections than one process may open: two servers, two worker processes.
start p1 17420
start p2 17430
bench connect-procs connect --addr 127.0.0.1:17420,127.0.0.1:17430 --procs 2 --conns "$CONNS_PROCS" --duration 5s
echo "done: $OUT" >&2
