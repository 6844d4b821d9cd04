#!/usr/bin/env bash
# Routed delivery against echo, alternating two server builds under one load generator:
#   scripts/route-ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [DURATION]
# Each round runs, against a server of each build (started once on 127.0.0.1), back to
# back: `bench echo`, `bench route` (SEND+ACK) and `bench route --mode request`, all 50
# connections x 16 in flight for DURATION (default 5s). Ratios are route/echo and
# request/echo of the same build in the same round. The load generator is NEW_BINARY's
# bench. Prints one line per run (its last figure: the share of the machine's CPU the
# hypervisor stole during it, steal.sh), then the medians per build.
set -euo pipefail
old=$1 new=$2 rounds=${3:-3} dur=${4:-5s}
# shellcheck source=scripts/ab-servers.sh
. "$(dirname "$0")/ab-servers.sh"
for r in $(seq "$rounds"); do
	for which in old new; do
		addr=$oaddr pid=$opid
		[ "$which" = new ] && addr=$naddr pid=$npid
		for kind in echo route request; do
			args=(echo)
			[ "$kind" = route ] && args=(route)
			[ "$kind" = request ] && args=(route --mode request)
			io0=$(awk '/^sysc/{printf "%s ", $2}' "/proc/$pid/io")
			c0=$(cpustat)
			"$new" bench "${args[@]}" --addr "$addr" --server-pid "$pid" --conns 50 --pipeline 16 \
				--duration "$dur" --json "$tmp/r.json" >/dev/null 2>&1
			io1=$(awk '/^sysc/{printf "%s ", $2}' "/proc/$pid/io")
			python3 -c "
import json
m=json.load(open('$tmp/r.json'))
n=m['messages']
r0, w0 = map(int, '$io0'.split()); r1, w1 = map(int, '$io1'.split())
recv = max(n['received'], 1)
# server: CPU us per message received by the clients, read and write system calls per message
print('$which', $r, '$kind', round(m['throughput_msgs_per_s']), m['latency_us']['p99'], round(m['server']['cpu_seconds'],2), n['sent'], n['received'], n['lost'], json.dumps(n['errors_by_code']).replace(' ',''),
      'cpu_us/msg', round(m['server']['cpu_seconds'] * 1e6 / recv, 2), 'reads/msg', round((r1 - r0) / recv, 3), 'writes/msg', round((w1 - w0) / recv, 3), 'steal%', $(steal_since "$c0"), flush=True)"
		done
	done
done | tee "$tmp/lines"
python3 - "$tmp/lines" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for w, r, k, tput, p99, cpu, sent, recv, lost, errs, *rest in rows:
    by.setdefault((w, r), {})[k] = (float(tput), float(p99), float(cpu), int(recv), float(rest[-1]))
for w in ("old", "new"):
    rs = [v for (ww, _), v in sorted(by.items()) if ww == w and len(v) == 3]
    route = [v["route"][0] / v["echo"][0] for v in rs]
    req = [v["request"][0] / v["echo"][0] for v in rs]
    p99 = [v["route"][1] / v["echo"][1] for v in rs]
    print(w, "route/echo", [round(x, 3) for x in route], "median", round(st.median(route), 3))
    print(w, "request/echo", [round(x, 3) for x in req], "median", round(st.median(req), 3))
    print(w, "route p99 / echo p99", [round(x, 2) for x in p99], "median", round(st.median(p99), 2))
    print(w, "steal % (echo, route, request) per round", [tuple(v[k][4] for k in ("echo", "route", "request")) for v in rs])
    for k in ("echo", "route", "request"):
        print(w, k, "msgs/s median", round(st.median(v[k][0] for v in rs)), "p99 us median", st.median(v[k][1] for v in rs))
PY
