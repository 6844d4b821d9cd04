#!/usr/bin/env bash
# Issue 12's connection run on one machine: NODES switchboard nodes on 127.0.0.1:0 (each
# process is limited to 20,000 open files here, so 100K needs several), then RUNS rounds
# of `switchboard bench connect --procs NODES` from 127.0.0.2.. against all of them, each
# followed by every node's connection gauge and refusals by reason from its /metrics.
# Results (JSON, summaries, node logs, metrics) go to $OUT. Every run is bounded and
# stops by itself; the nodes are stopped on exit.
#
#   scripts/bench-100k.sh                       # 100,000 connections, twice
#   CONNS=114000 RUNS=1 scripts/bench-100k.sh    # 19,000 per node
#
# Environment: BIN (bin/switchboard), NODES (6), CONNS (100000), RUNS (2), DURATION of
# the hold (5s), RAMP (0: as fast as possible), SERVE_FLAGS (extra serve flags), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/switchboard}
NODES=${NODES:-6}
CONNS=${CONNS:-100000}
RUNS=${RUNS:-2}
DURATION=${DURATION:-5s}
RAMP=${RAMP:-0}
OUT=${OUT:-results/100k-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# field LOG MSG: the addr= of the first log line with msg="MSG", waiting up to 10 s.
field() {
	for _ in $(seq 100); do
		local a
		a=$(grep -o "msg=\"$2\" addr=[0-9.:]*" "$1" 2>/dev/null | head -1 | sed 's/.*addr=//')
		if [ -n "$a" ]; then echo "$a"; return 0; fi
		sleep 0.1
	done
	echo "no '$2' line in $1" >&2
	return 1
}

addrs=() admins=()
for i in $(seq 0 $((NODES - 1))); do
	# shellcheck disable=SC2086 # SERVE_FLAGS is a list of flags
	"$BIN" serve --listen 127.0.0.1:0 --admin 127.0.0.1:0 ${SERVE_FLAGS:-} >"$OUT/node$i.log" 2>&1 &
	pids+=($!)
done
for i in $(seq 0 $((NODES - 1))); do
	addrs+=("$(field "$OUT/node$i.log" "switchboard listening")")
	admins+=("$(field "$OUT/node$i.log" "admin listening")")
done
joined=$(IFS=,; echo "${addrs[*]}")
{ date -u; uname -srm; nproc; go version; git rev-parse --short HEAD; echo "nodes $joined"; } >"$OUT/machine.txt"
echo "results in $OUT; nodes $joined" >&2

# metrics K: every node's connections, max, zone (0 GREEN .. 3 RED), zone inputs, times it
# entered RED and refusals by reason, saved to
# metrics-K.txt and printed one line per node (refusal reasons only when non-zero).
metrics() {
	for i in $(seq 0 $((NODES - 1))); do
		curl -sf "http://${admins[$i]}/metrics" |
			grep -E '^switchboard_connections(_max)? |^switchboard_connections_refused_total|^switchboard_zone |^switchboard_zone_(input|transitions_total)|^switchboard_loop_lag_max|^switchboard_accept_pauses_total|^switchboard_(traffic|admission)_zone ' |
			sed "s/^/node$i /" || echo "node$i /metrics unreachable"
	done >"$OUT/metrics-$1.txt"
	awk '{ n[$1] = n[$1] }
		$2 == "switchboard_connections" { c[$1] = $3 }
		$2 == "switchboard_connections_max" { m[$1] = $3 }
		$2 == "switchboard_zone" { z[$1] = $3 }
		$2 == "switchboard_zone_transitions_total{to=\"RED\"}" { red[$1] = $3 }
		$2 ~ /refused_total/ && $3 != 0 { sub(/.*reason="/, "", $2); sub(/"}/, "", $2); r[$1] = r[$1] " " $2 "=" $3 }
		$2 ~ /accept_pauses_total/ && $3 != 0 { sub(/.*reason="/, "", $2); sub(/"}/, "", $2); p[$1] = p[$1] " " $2 "=" $3 }
		END { for (k in n) printf "%s: connections %s of max %s, zone %s (entered RED %d times), refused:%s, accept paused:%s\n", k, c[k], m[k], z[k], red[k], (r[k] == "" ? " none" : r[k]), (p[k] == "" ? " never" : p[k]) }' \
		"$OUT/metrics-$1.txt" | sort
}

# settle: wait up to 60 s for every node to report 0 connections (the previous run's
# closes to be processed).
settle() {
	for _ in $(seq 600); do
		local busy=0
		for a in "${admins[@]}"; do
			n=$(curl -sf "http://$a/metrics" | awk '$1 == "switchboard_connections" {print $2}')
			[ "${n:-0}" = 0 ] || busy=1
		done
		[ $busy = 0 ] && return 0
		sleep 0.1
	done
	echo "nodes still hold connections after 60 s" >&2
}

status=0
for r in $(seq "$RUNS"); do
	settle
	echo "== run $r: $CONNS connections over $NODES nodes" >&2
	"$BIN" bench connect --addr "$joined" --procs "$NODES" --conns "$CONNS" --ramp "$RAMP" \
		--duration "$DURATION" --admin "${admins[0]}" --json "$OUT/run$r.json" \
		>"$OUT/run$r.txt" 2>"$OUT/run$r.stderr" &
	bench=$!
	# The nodes' figures while the connections are held: after "load starts".
	for _ in $(seq 3000); do
		grep -q "load starts" "$OUT/run$r.stderr" && break
		kill -0 $bench 2>/dev/null || break
		sleep 0.1
	done
	sleep 1 # the connection gauge is published on the nodes' tick, not per accept
	metrics "run$r-held"
	wait $bench || status=1
	cat "$OUT/run$r.stderr" >&2
	cat "$OUT/run$r.txt"
done
exit $status
