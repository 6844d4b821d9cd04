#!/usr/bin/env bash
# Routed SEND+ACK with larger messages, alternating server builds, a fresh server per run:
#   scripts/size-ab.sh ROUNDS SIZE BINARY...
# Each round runs, for each BINARY in turn, a new `serve --listen 127.0.0.1:PORT --admin
# off` (its built-in defaults: the balanced profile, GOMEMLIMIT 180 MiB) and against it
# `bench route` (SEND+ACK to random names; MODE=request: REQUEST/REPLY), CONNS (50)
# connections x PIPELINE (16) in flight, SIZE-byte payloads, for DURATION (default 5s),
# all four from the environment; the load generator is the last BINARY's bench.
# A fresh server per run, because a node's memory after a run (and, before 2026-12-04,
# its zones) carries over into the next. Prints one line per run, then the medians per
# build: msgs/s, errors by code, the server's peak RSS, its CPU per message, p99.
set -euo pipefail
rounds=$1 size=$2
shift 2
dur=${DURATION:-5s} conns=${CONNS:-50} pipeline=${PIPELINE:-16} mode=${MODE:-send}
gen=${*: -1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for r in $(seq "$rounds"); do
	for bin in "$@"; do
		port=$(free_port)
		"$bin" serve --listen "127.0.0.1:$port" --admin off >/dev/null 2>&1 &
		pid=$!
		for _ in $(seq 50); do
			(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
			sleep 0.1
		done
		"$gen" bench route --addr "127.0.0.1:$port" --server-pid "$pid" --conns "$conns" --pipeline "$pipeline" \
			--mode "$mode" --size "$size" --duration "$dur" --json "$tmp/r.json" >/dev/null 2>&1 || true
		kill "$pid"
		wait "$pid" || true
		python3 -c "
import json
m=json.load(open('$tmp/r.json'))
n=m['messages']; s=m['server']
print('$(basename "$bin")', $r, round(m['throughput_msgs_per_s']), json.dumps(n['errors_by_code']).replace(' ',''),
      round(s['rss_bytes_peak']/2**20, 1), round(s['cpu_per_msg_us'], 2), m['latency_us']['p99'], n['lost'], flush=True)"
	done
done | tee "$tmp/lines"
python3 - "$tmp/lines" <<'PY'
import sys, statistics as st, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    runs[f[0]].append(f)
print("build  msgs/s  peak_rss_MiB  cpu_us/msg  p99_us  runs_with_errors  (medians of", len(next(iter(runs.values()))), "runs)")
for b, rs in runs.items():
    med = lambda i: st.median(float(x[i]) for x in rs)
    errs = sum(1 for x in rs if x[3] != "{}")
    print(b, round(med(2)), med(4), med(5), med(6), errs)
PY
