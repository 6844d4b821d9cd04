#!/usr/bin/env bash
# Echo against the bare gnet floor, alternating two server builds under one load generator:
#   scripts/echo-ab.sh OLD_BINARY NEW_BINARY [ROUNDS]
# Each round runs `bench echo --floor` (50 connections x 16 in flight, 5 s) against a
# server of each build, started once on 127.0.0.1; the ratio server/floor comes from the
# same invocation. The load generator is NEW_BINARY's bench. Prints one line per run,
# with the share of the machine's CPU stolen by the hypervisor during it (steal.sh).
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
# shellcheck source=scripts/ab-servers.sh
. "$(dirname "$0")/ab-servers.sh"
for r in $(seq "$rounds"); do
	for which in old new; do
		addr=$oaddr pid=$opid
		[ "$which" = new ] && addr=$naddr pid=$npid
		c0=$(cpustat)
		"$new" bench echo --addr "$addr" --server-pid "$pid" --conns 50 --pipeline 16 --duration 5s \
			--floor --json "$tmp/r.json" >/dev/null 2>&1
		python3 -c "import json,sys;m=json.load(open('$tmp/r.json'));print('$which round $r', 'msgs/s', round(m['throughput_msgs_per_s']), 'floor', round(m['floor']['throughput_msgs_per_s']), 'ratio', round(m['floor']['ratio'],3), 'p99_us', m['latency_us']['p99'], 'steal%', $(steal_since "$c0"))"
	done
done
