#!/usr/bin/env bash
# Routed SEND+ACK across a 3-node cluster with larger messages, alternating builds:
#   scripts/cluster-size-ab.sh ROUNDS BINARY...
# Each round, for each BINARY in turn: three fresh nodes (`serve --cluster embedded`, all
# with JetStream, new store directories, their built-in defaults otherwise) on ports
# PORT_BASE (27400) .. PORT_BASE+22, ready on /readyz; then, for each spec in SPECS
# ("4096 50 16|65536 50 16": payload bytes, connections, in flight), `bench route`
# (BINARY's own) for DURATION (5s) with the connections spread over the three nodes, so
# ~2/3 of the messages cross nodes. One line per run: msgs/s, p99, lost, errors by code,
# the nodes' CPU and the bytes they allocated (go_memstats_alloc_bytes_total) per message
# received, the largest RSS of one node (sampled every 200 ms), the steal (steal.sh).
# Then each node's RSS and heap in use 5 and 25 s after the load, and the nodes stop.
set -euo pipefail
rounds=$1
shift
# shellcheck source=scripts/steal.sh
. "$(dirname "$0")/steal.sh"
b=${PORT_BASE:-27400}
IFS='|' read -r -a specs <<<"${SPECS:-4096 50 16|65536 50 16}"
routes=127.0.0.1:$((b + 2)),127.0.0.1:$((b + 12)),127.0.0.1:$((b + 22))
addrs=127.0.0.1:$b,127.0.0.1:$((b + 10)),127.0.0.1:$((b + 20))
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
admin() { echo "127.0.0.1:$((b + 10 * $1 + 1))"; }
metric() { curl -s "http://$(admin "$1")/metrics" | awk -v m="$2" '$1 == m {printf "%d", $2}'; }
sum_nodes() { # metric name, or "ticks": the three nodes' sum
	local s=0 i
	for i in 0 1 2; do
		if [ "$1" = ticks ]; then
			s=$((s + $(awk '{print $14 + $15}' "/proc/${pids[$i]}/stat")))
		else
			s=$((s + $(metric "$i" "$1")))
		fi
	done
	echo "$s"
}
for p in $(seq "$b" $((b + 22))); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "port $p is in use: set PORT_BASE" >&2
		exit 1
	fi
done
for r in $(seq "$rounds"); do
	for bin in "$@"; do
		name=$(basename "$bin")
		pids=()
		for i in 0 1 2; do
			rm -rf "$tmp/store$i"
			"$bin" serve --cluster embedded --node-id $((i + 1)) --cluster-listen "127.0.0.1:$((b + 10 * i + 2))" \
				--cluster-routes "$routes" --cluster-store-dir "$tmp/store$i" --listen "127.0.0.1:$((b + 10 * i))" \
				--admin "$(admin "$i")" --loop-lag-budget 1h >"$tmp/node$i.log" 2>&1 &
			pids+=($!)
		done
		for _ in $(seq 600); do
			ok=0
			for i in 0 1 2; do
				[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$(admin "$i")/readyz")" = 200 ] && ok=$((ok + 1))
			done
			[ "$ok" = 3 ] && break
			sleep 0.2
		done
		for spec in "${specs[@]}"; do
			read -r size conns pipeline <<<"$spec"
			a0=$(sum_nodes go_memstats_alloc_bytes_total) t0=$(sum_nodes ticks) c0=$(cpustat)
			(
				peak=0
				while sleep 0.2; do
					for pid in "${pids[@]}"; do
						v=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
						[ "$v" -gt "$peak" ] && peak=$v
					done
					echo "$peak" >"$tmp/peak"
				done
			) &
			sampler=$!
			"$bin" bench route --addr "$addrs" --conns "$conns" --pipeline "$pipeline" --size "$size" \
				--duration "${DURATION:-5s}" --json "$tmp/r.json" >/dev/null 2>&1 || true
			kill "$sampler"
			wait "$sampler" 2>/dev/null || true
			a1=$(sum_nodes go_memstats_alloc_bytes_total) t1=$(sum_nodes ticks)
			python3 -c "
import json
m=json.load(open('$tmp/r.json')); n=m['messages']; recv=max(n['received'], 1)
print('$name', $r, 'size', $size, 'msgs/s', round(m['throughput_msgs_per_s']), 'p99_ms', round(m['latency_us']['p99']/1000, 1),
      'lost', n['lost'], 'errors', json.dumps(n['errors_by_code']).replace(' ', ''),
      'nodes_cpu_us/msg', round(($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / recv, 1), 'alloc_B/msg', round(($a1 - $a0) / recv),
      'peak_node_rss_MiB', round(int(open('$tmp/peak').read()) / 1024, 1), 'steal%', $(steal_since "$c0"), flush=True)"
		done
		for w in 5 25; do
			sleep $((w == 5 ? 5 : 20))
			echo "$name $r after ${w}s: RSS MiB $(for pid in "${pids[@]}"; do awk '/^VmRSS/{printf "%.1f ", $2/1024}' "/proc/$pid/status"; done)heap_inuse MiB $(for i in 0 1 2; do awk -v v="$(metric "$i" go_memstats_heap_inuse_bytes)" 'BEGIN{printf "%.1f ", v/1048576}'; done)"
		done
		kill "${pids[@]}"
		wait "${pids[@]}" 2>/dev/null || true
	done
done
