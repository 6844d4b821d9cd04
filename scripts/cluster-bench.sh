#!/usr/bin/env bash
# Cluster figures on one machine (issue 11), loopback only:
#
#   route     3 embedded nodes (cluster embedded, R3 KV) and one node with cluster off,
#             all running; ROUNDS rounds, alternating, of `bench route` (SEND+ACK, closed
#             loop) and `bench route --mode request` against the single node and against
#             the three nodes (connections spread over them, so ~2/3 of random targets
#             are on another node); then an open-loop REQUEST/REPLY latency comparison at
#             LAT_RATE msgs/s: single node (cluster off), one cluster node only (every
#             target on the same node), all three (~2/3 cross-node).
#   memory    fresh nodes: RSS of each node idle, then with MEM_CONNS connections per node
#             each REGISTERing one name (`bench connect --register --procs 3`), and the
#             same for one node with cluster off and MEM_CONNS connections (`--procs 1`);
#             then both again with connections that register no name.
#   failover  fresh 3 nodes; `bench failover`: FO_CLIENTS Go clients (package client:
#             reconnect, register again), one name each, spread over the three nodes,
#             send open-loop SEND+ACK and REQUEST (FO_MODE) to each other at FO_RATE
#             msgs/s for FO_DURATION; the bench kills node 3 (SIGKILL; FO_ACTION=drain:
#             SIGTERM, a planned restart that drains) FO_KILL_AT seconds into the
#             traffic. Reported (failover.txt, failover.json): node 3's clients'
#             reconnect times, the time until each of their names is reachable again,
#             sent = OK + refused by code + no outcome with acknowledged-but-never-
#             delivered and duplicates counted, and a scan of nodes 1 and 2's
#             /cluster/names (no name with two owners, caches agreeing with the owners).
#             (Until 2026-12 this phase ran `bench route --mode request` with a kill -9
#             from the script; its raw connections did not reconnect.)
#   sigstop   fresh 3 nodes (plus SS_FLAGS, default --idle-timeout 6s, so that the Go
#             clients notice a silent node within ~3 s rather than 30–45 s); open-loop
#             `bench route --mode request` across all three at FO_RATE for SS_DURATION,
#             and bench/sigstop: SS_NAMES Go clients (package client: reconnect,
#             re-register) holding a name each on node 3, a prober on node 1 sending
#             SEND+ACK to every name in sweeps; node 3 gets SIGSTOP for SS_STOP, then
#             SIGCONT: it fences itself and exits 1, and is restarted (as a supervisor
#             would). Reported: takeover during the stop, time from SIGCONT to every name
#             reachable and every live node GREEN and ready, node 3's exit and rejoin.
#   hold      (not in the default PHASES) fresh HOLD_NODES nodes, the first HOLD_JS of them
#             with JetStream (the others --cluster-jetstream=false), all given every
#             node's route address; idle RSS after 10 s; then `bench connect --register
#             --procs HOLD_PROCS` opens HOLD_CONNS connections spread over all nodes, each
#             REGISTERing a name, and holds them for HOLD; every node's RSS (anonymous and
#             file-backed), connections and names are sampled every HOLD_SAMPLE seconds
#             meanwhile. At the end of the hold each node's /metrics and, with
#             HOLD_PROFILE=1, its heap profile (/debug/pprof/heap) are saved. The lock is
#             held for the whole phase (nodes started to nodes stopped). The nodes get
#             --idle-timeout HOLD_IDLE_TIMEOUT: bench connect pings only once every
#             connection is up, and registering 100K names takes minutes, longer than the
#             default 90 s.
#
#   scripts/cluster-bench.sh                 # route, memory and failover
#   PHASES=hold HOLD=10m scripts/cluster-bench.sh    # 6 nodes (3 with JetStream), 100K names
#   PHASES="route" ROUNDS=5 scripts/cluster-bench.sh
#   PHASES="latency" SERVE_FLAGS="--loops 1" scripts/cluster-bench.sh   # latency runs only
#
# Environment: BIN (bin/switchboard), PHASES ("route memory failover"; "latency" runs
# only the route phase's latency runs), SERVE_FLAGS (extra flags for every node), ROUNDS (3),
# DURATION (5s), CONNS (50), PIPELINE (16), LAT_RATE (2000), MEM_CONNS (15000 per node),
# MEM_HOLD (20s), FO_RATE (2000), FO_DURATION (40s), FO_KILL_AT (10), FO_CLIENTS (50),
# FO_MODE (mix: send, request or mix), SS_FLAGS
# (--idle-timeout 6s), SS_STOP (30s), SS_NAMES (30), SS_DURATION (60s), HOLD_NODES (6, at
# most 6), HOLD_JS (3), HOLD_CONNS (100000), HOLD_PROCS (6: one process holds at most
# ~19,900 connections here), HOLD (3m), HOLD_SAMPLE (10), HOLD_PROFILE (0), PORT_BASE
# (17400: ports PORT_BASE..PORT_BASE+61 must be free; they are checked), LOCK
# (/tmp/bench.lock: every bench invocation runs under flock on it), OUT
# (results/cluster-TIMESTAMP), NODE_ENV (variables for the cluster nodes' environment,
# e.g. "GOGC=50"), HOLD_IDLE_TIMEOUT (5m), HOLD_REGISTER (1; 0: the hold phase's connections
# register no name, for the cost of the connections alone), HOLD_KEEPALIVE (30s: every held
# connection PINGs once per interval, spread evenly: WELCOME's ping interval with the
# default 90 s idle timeout; the Go client pings twice as often), HOLD_RATE (0: none; else an
# open-loop `bench route` at that many msgs/s between random names on all nodes once every
# held connection and name is counted by the nodes, over HOLD_LOAD_CONNS (600) more
# connections, mode HOLD_LOAD_MODE (send), for HOLD_LOAD_FOR (60s), answers awaited 10 s
# more; a list of rates runs one after the other: keep their total below HOLD), HOLD_KILL
# (0: none; else after the rates `bench failover` with FO_CLIENTS, FO_RATE, FO_MODE,
# FO_DURATION and FO_KILL_AT kills (FO_ACTION=drain: SIGTERM, drains) node HOLD_KILL: 1..HOLD_JS has JetStream (it may lead
# a bucket), the others do not; "names-leader": the names bucket's stream leader, read
# from the nodes' logs; its held connections just close, they do not reconnect unless
# HOLD_RECONNECT=1), HOLD_RECONNECT (0; 1: the hold's `bench connect` gets --reconnect:
# a held connection the server closes dials another node and REGISTERs its name again;
# hold.txt/hold.json then report lost, reconnected, re-registered, names lost and not
# re-registered, and loss-to-reconnected, loss-to-re-registered and
# first-loss-to-re-registered (the kill's takeover for all of the victim's connections),
# repeated in the summary as "hold: bench: reconnect ..."), HOLD_BESIDE (0; else that many
# idle connections held on the same machine but outside the cluster: six plain nodes, no
# cluster, on ports PORT_BASE+62..PORT_BASE+73, given them by one more `bench connect
# --procs 6` before the cluster's own; what the machine's held sockets cost, apart from
# the cluster's work for them), HOLD_BESIDE_STOP (0; 1: SIGSTOP those six nodes and their
# holders once the connections are up, so that their sockets stay open and nothing of
# theirs runs; SIGCONT before they are stopped at the end), HOLD_CPU_ROLES (0; 1 with
# HOLD_KILL: scripts/cpu-roles.py samples every switchboard process's CPU every 0.25 s
# during `bench failover` and reports, by role, the cores used 5 s before the victim was
# gone and in windows after: the nodes, the load generator (`bench connect` and its
# workers), the Go clients; samples in hold-cpu-roles.txt).
# Every run's line, the hold phase's idle floor and loads, and each failover run report
# "steal": the share of the machine's CPU the hypervisor gave to other guests meanwhile
# (/proc/stat), which is much of why runs of one command differ on a shared VM.
# Every process this script starts is stopped on exit; every bench run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/switchboard}
PHASES=${PHASES:-route memory failover}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-50}
PIPELINE=${PIPELINE:-16}
LAT_RATE=${LAT_RATE:-2000}
MEM_CONNS=${MEM_CONNS:-15000}
MEM_HOLD=${MEM_HOLD:-20s}
FO_RATE=${FO_RATE:-2000}
FO_DURATION=${FO_DURATION:-40s}
FO_KILL_AT=${FO_KILL_AT:-10}
FO_CLIENTS=${FO_CLIENTS:-50}
FO_MODE=${FO_MODE:-mix}
HOLD_NODES=${HOLD_NODES:-6}
HOLD_JS=${HOLD_JS:-3}
HOLD_CONNS=${HOLD_CONNS:-100000}
HOLD_PROCS=${HOLD_PROCS:-6}
HOLD=${HOLD:-3m}
HOLD_SAMPLE=${HOLD_SAMPLE:-10}
HOLD_PROFILE=${HOLD_PROFILE:-0}
HOLD_IDLE_TIMEOUT=${HOLD_IDLE_TIMEOUT:-5m}
HOLD_REGISTER=${HOLD_REGISTER:-1}
HOLD_KEEPALIVE=${HOLD_KEEPALIVE:-30s}
HOLD_RATE=${HOLD_RATE:-0}
HOLD_KILL=${HOLD_KILL:-0}
HOLD_RECONNECT=${HOLD_RECONNECT:-0}
HOLD_CPU_ROLES=${HOLD_CPU_ROLES:-0}
HOLD_LOAD_CONNS=${HOLD_LOAD_CONNS:-600}
HOLD_LOAD_MODE=${HOLD_LOAD_MODE:-send}
HOLD_LOAD_FOR=${HOLD_LOAD_FOR:-60s}
HOLD_BESIDE=${HOLD_BESIDE:-0}
HOLD_BESIDE_STOP=${HOLD_BESIDE_STOP:-0}
PORT_BASE=${PORT_BASE:-17400}
LOCK=${LOCK:-/tmp/bench.lock}
OUT=${OUT:-results/cluster-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
tmp=$(mktemp -d)

# Node i (1..6): client PORT_BASE+10(i-1), admin +1, cluster routes +2. Solo: +60, +61.
port() { echo $((PORT_BASE + 10 * ($1 - 1) + $2)); }
# ready ADMIN: the node behind admin address ADMIN answers /readyz with 200.
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/readyz")" = 200 ]; }
# Plain node i (1..6) of HOLD_BESIDE: client PORT_BASE+62+2(i-1), admin +1.
beside_port() { echo $((PORT_BASE + 62 + 2 * ($1 - 1) + $2)); }
last_port=$((PORT_BASE + 61))
[ "$HOLD_BESIDE" != 0 ] && last_port=$((PORT_BASE + 73))
for p in $(seq "$PORT_BASE" "$last_port"); do
	if ss -Hltn "sport = :$p" | grep -q .; then
		echo "port $p is in use; set PORT_BASE" >&2
		exit 2
	fi
done
routes="127.0.0.1:$(port 1 2),127.0.0.1:$(port 2 2),127.0.0.1:$(port 3 2)"
all="127.0.0.1:$(port 1 0),127.0.0.1:$(port 2 0),127.0.0.1:$(port 3 0)"
solo_addr=127.0.0.1:$((PORT_BASE + 60))
solo_admin=127.0.0.1:$((PORT_BASE + 61))

declare -A pid=()
cleanup() {
	beside_cont
	for k in "${!pid[@]}"; do kill -INT "${pid[$k]}" 2>/dev/null || true; done
	for _ in $(seq 50); do
		local alive=0
		for k in "${!pid[@]}"; do kill -0 "${pid[$k]}" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.2
	done
	for k in "${!pid[@]}"; do kill -KILL "${pid[$k]}" 2>/dev/null || true; done
	if [ -n "${sampler:-}" ]; then kill "$sampler" 2>/dev/null || true; fi
	if [ -n "${roles:-}" ]; then kill "$roles" 2>/dev/null || true; fi
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# beside_cont: SIGCONT whatever HOLD_BESIDE_STOP stopped (pid keys b*), so that it can
# take the signals that stop it.
beside_cont() {
	local k
	for k in "${!pid[@]}"; do
		[[ $k == b* ]] || continue
		# shellcheck disable=SC2046 # the children's pids, one word each
		kill -CONT "${pid[$k]}" $(pgrep -P "${pid[$k]}" 2>/dev/null) 2>/dev/null || true
	done
}

# stop K: SIGINT node K (n1..n3, solo) and wait for it (30 s at most, then SIGKILL).
stop() {
	local p=${pid[$1]:-}
	[ -z "$p" ] && return 0
	kill -INT "$p" 2>/dev/null || true
	for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	unset "pid[$1]"
}

# start_node I TAG [JS ROUTES]: node I on its store dir (kept), logging to TAG-nodeI.log;
# with JetStream unless JS is 0, joined through ROUTES ($routes).
start_node() {
	local jsflag=()
	[ "${3:-1}" = 0 ] && jsflag=(--cluster-jetstream=false)
	# shellcheck disable=SC2086 # SERVE_FLAGS is a list of flags, NODE_ENV of variables
	env ${NODE_ENV:-} "$BIN" serve --cluster embedded --node-id "$1" --cluster-listen "127.0.0.1:$(port "$1" 2)" \
		--cluster-routes "${4:-$routes}" --cluster-store-dir "$tmp/store$1" "${jsflag[@]}" \
		--listen "127.0.0.1:$(port "$1" 0)" --admin "127.0.0.1:$(port "$1" 1)" \
		--loop-lag-budget 1h ${SERVE_FLAGS:-} >"$OUT/$2-node$1.log" 2>&1 &
	pid[n$1]=$!
}

# start_cluster TAG [N JS ROUTES]: N (3) fresh embedded nodes (new store dirs), the first
# JS (N) of them with JetStream, joined through ROUTES ($routes); waits for /readyz 200.
start_cluster() {
	local n=${2:-3} js=${3:-${2:-3}} rts=${4:-$routes}
	for i in $(seq "$n"); do
		rm -rf "$tmp/store$i"
		local withjs=1
		[ "$i" -gt "$js" ] && withjs=0
		start_node "$i" "$1" "$withjs" "$rts"
	done
	local t0=$SECONDS
	for _ in $(seq 600); do
		local ok=0
		for i in $(seq "$n"); do
			ready "127.0.0.1:$(port "$i" 1)" && ok=$((ok + 1))
		done
		if [ "$ok" = "$n" ]; then
			echo "$1: cluster ready after $((SECONDS - t0)) s" | tee -a "$OUT/log.txt" >&2
			return 0
		fi
		sleep 0.2
	done
	echo "$1: cluster not ready after 120 s" >&2
	exit 1
}

start_solo() {
	# shellcheck disable=SC2086 # SERVE_FLAGS is a list of flags
	"$BIN" serve --listen "$solo_addr" --admin "$solo_admin" --loop-lag-budget 1h ${SERVE_FLAGS:-} >"$OUT/$1-solo.log" 2>&1 &
	pid[solo]=$!
	for _ in $(seq 100); do
		ready "$solo_admin" && return 0
		sleep 0.1
	done
	echo "$1: solo node not ready" >&2
	exit 1
}

# nodes: the keys of the running processes, n1..n6 then solo.
nodes() { for k in n1 n2 n3 n4 n5 n6 solo; do [ -n "${pid[$k]:-}" ] && echo "$k"; done; }
# admin_of KEY: a node's admin address.
admin_of() { if [ "$1" = solo ]; then echo "$solo_admin"; else echo "127.0.0.1:$(port "${1#n}" 1)"; fi; }

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# cpustat, steal_since: the hypervisor's steal over a run.
# shellcheck source=scripts/steal.sh
. scripts/steal.sh
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# metric ADMIN NAME: the value of an unlabelled metric as an integer (0 when absent).
metric() { { curl -s "http://$1/metrics" || true; } | awk -v m="$2" '$1 == m {v = $2} END {printf "%d", v}'; }

# state: one JSON object with each running node's CPU ticks, RSS and forwarded records.
state() {
	local s="{" sep="" k
	for k in $(nodes); do
		local adm
		adm=$(admin_of "$k")
		s+="$sep\"$k\":{\"ticks\":$(ticks "${pid[$k]}"),\"rss_kb\":$(rss_kb "${pid[$k]}"),\"fwd\":$(metric "$adm" switchboard_cluster_forwarded_total)}"
		sep=,
	done
	echo "$s}"
}

# run PHASE LABEL ROUND BENCH-ARGS...: one bench run under the lock, with the load average
# and every node's CPU, RSS and forwarded records before and after; one line to runs.jsonl.
run() {
	local phase=$1 label=$2 round=$3
	shift 3
	local j="$OUT/$phase-$label-r$round.json"
	local load before after c0
	# The figures are taken once the lock is held: waiting for it is not part of the run.
	exec 9>>"$LOCK"
	flock 9
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	c0=$(cpustat)
	before=$(state)
	"$BIN" bench "$@" --json "$j" >"$OUT/$phase-$label-r$round.txt" 2>&1 || true
	after=$(state)
	flock -u 9
	exec 9>&-
	python3 - "$j" "$phase" "$label" "$round" "$load" "$before" "$after" "$(steal_since "$c0")" >>"$OUT/runs.jsonl" <<'PY'
import json, sys
j, phase, label, rnd, load, before, after, steal = sys.argv[1:]
try:
    m = json.load(open(j))
except Exception as e:
    print(json.dumps({"phase": phase, "label": label, "round": int(rnd), "error": str(e)}))
    sys.exit()
b, a = json.loads(before), json.loads(after)
hz = 100
nodes = {k: {"cpu_s": (a[k]["ticks"] - b[k]["ticks"]) / hz, "rss_mib": a[k]["rss_kb"] / 1024,
             "fwd": a[k]["fwd"] - b[k]["fwd"]} for k in a if k in b}
n = m["messages"]
print(json.dumps({"phase": phase, "label": label, "round": int(rnd), "load": load,
    "addr": m["config"]["addr"], "mode": m["config"].get("mode"), "rate": m["config"].get("rate"),
    "conns": m["connections"], "tput": m["throughput_msgs_per_s"], "lat": m["latency_us"],
    "sent": n["sent"], "received": n["received"], "lost": n["lost"], "errors": n["errors_by_code"],
    "loadgen_cpu_s": m["load_generator"]["cpu_seconds"], "nodes": nodes, "steal_pct": float(steal)}))
PY
	tail -1 "$OUT/runs.jsonl" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
if "error" in r: print(r); sys.exit()
cpu = " ".join("%s %.2fs/%.0fM" % (k, v["cpu_s"], v["rss_mib"]) for k, v in r["nodes"].items())
c = r["conns"]
conn = "conns %d/%d refused %s failed %s | " % (c["established"], c["target"], c["refused_by_code"], c["failed_by_cause"])
print(conn + "%-8s %-14s r%d load %s steal %.1f%%: %8.0f msgs/s p50 %.0f p95 %.0f p99 %.0f us, sent %d recv %d lost %d errors %s | %s" % (
    r["phase"], r["label"], r["round"], r["load"], r["steal_pct"], r["tput"], r["lat"]["p50"], r["lat"]["p95"], r["lat"]["p99"],
    r["sent"], r["received"], r["lost"], r["errors"], cpu))' | tee -a "$OUT/log.txt" >&2
}

{ date -u; uname -srm; nproc; go version; git rev-parse --short HEAD; git status --short | head; } >"$OUT/machine.txt"
touch "$OUT/runs.jsonl" # the summary reads it; the sigstop phase adds nothing to it
echo "results in $OUT" >&2

if [[ " $PHASES " == *" route "* || " $PHASES " == *" latency "* ]]; then
	start_cluster route
	start_solo route
	common=(--conns "$CONNS" --pipeline "$PIPELINE" --duration "$DURATION")
	for r in $(seq "$ROUNDS"); do
		if [[ " $PHASES " == *" route "* ]]; then
			for mode in send request; do
				run route "$mode-solo" "$r" route --mode "$mode" --addr "$solo_addr" --server-pid "${pid[solo]}" "${common[@]}"
				run route "$mode-cluster3" "$r" route --mode "$mode" --addr "$all" --server-pid "${pid[n1]}" "${common[@]}"
			done
		fi
		run latency solo "$r" route --mode request --rate "$LAT_RATE" --addr "$solo_addr" --server-pid "${pid[solo]}" --conns "$CONNS" --duration "$DURATION"
		run latency same-node "$r" route --mode request --rate "$LAT_RATE" --addr "127.0.0.1:$(port 1 0)" --server-pid "${pid[n1]}" --conns "$CONNS" --duration "$DURATION"
		run latency cluster3 "$r" route --mode request --rate "$LAT_RATE" --addr "$all" --server-pid "${pid[n1]}" --conns "$CONNS" --duration "$DURATION"
	done
	stop solo
	for i in 1 2 3; do stop n$i; done
fi

# sample FILE [SECONDS]: every SECONDS (1), each running node's RSS (KiB), connections and
# names.
sample() {
	while :; do
		local line k
		line="$(date +%s)"
		for k in $(nodes); do
			local adm
			adm=$(admin_of "$k")
			line+=" $k $(rss_kb "${pid[$k]}") $(metric "$adm" switchboard_connections) $(metric "$adm" switchboard_registry_names)"
		done
		echo "$line" >>"$1"
		sleep "${2:-1}"
	done
}

# memory KIND REG: fresh nodes of KIND (cluster: three nodes, MEM_CONNS connections each;
# solo: one node with cluster off, MEM_CONNS connections), idle CPU and RSS over 10 s, then
# `bench connect` holding the connections for MEM_HOLD, with --register when REG is 1;
# every node's RSS, connections and names are sampled each second meanwhile.
memory() {
	local kind=$1 reg=$2 tag label args=()
	label=$kind-$([ "$reg" = 1 ] && echo names || echo nonames)
	[ "$reg" = 1 ] && args=(--register)
	if [ "$kind" = cluster ]; then
		start_cluster "memory-$label"
		args+=(--conns $((3 * MEM_CONNS)) --procs 3 --addr "$all" --server-pid "${pid[n1]}")
	else
		start_solo "memory-$label"
		args+=(--conns "$MEM_CONNS" --procs 1 --addr "$solo_addr" --server-pid "${pid[solo]}")
	fi
	# idle CPU of each node over 10 s (lease renewals, watches, timers); a tick is 10 ms,
	# so ticks over 10 s are ms of CPU per second
	declare -A t0=()
	for k in n1 n2 n3 solo; do [ -n "${pid[$k]:-}" ] && t0[$k]=$(ticks "${pid[$k]}"); done
	sleep 10
	tag="memory: $label idle CPU over 10 s, ms/s"
	for k in "${!t0[@]}"; do tag+=" $k $(($(ticks "${pid[$k]}") - t0[$k]))"; done
	echo "$tag" | tee -a "$OUT/log.txt" >&2
	tag="memory: $label idle RSS KiB"
	for k in n1 n2 n3 solo; do [ -n "${pid[$k]:-}" ] && tag+=" $k $(rss_kb "${pid[$k]}")"; done
	echo "$tag" | tee -a "$OUT/log.txt" >&2
	sample "$OUT/memory-$label-samples.txt" &
	sampler=$!
	run memory "$label" 1 connect "${args[@]}" --duration "$MEM_HOLD" --timeout 60s
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	sampler=
	python3 - "$OUT/memory-$label-samples.txt" <<'PY' | tee -a "$OUT/log.txt" >&2
import sys
# the last sample with the most connections: RSS of each node while all were held
rows = []
for line in open(sys.argv[1]):
    f = line.split()
    nodes = {f[i]: (int(f[i + 1]), int(f[i + 2]), int(f[i + 3])) for i in range(1, len(f), 4)}
    rows.append((sum(v[1] for v in nodes.values()), int(f[0]), nodes))
best = max(rows, key=lambda r: (r[0], r[1]))
print("memory: %s held: " % sys.argv[1].split("memory-")[-1].replace("-samples.txt", "") + ", ".join(
    "%s RSS %.1f MiB conns %d names %d" % (k, v[0] / 1024, v[1], v[2]) for k, v in best[2].items()))
PY
	if [ "$kind" = cluster ]; then
		for i in 1 2 3; do echo "memory: $label store dir n$i $(du -sk "$tmp/store$i" | cut -f1) KiB" | tee -a "$OUT/log.txt" >&2; done
		for i in 1 2 3; do stop n$i; done
	else
		stop solo
	fi
}

if [[ " $PHASES " == *" memory "* ]]; then
	memory cluster 1
	memory solo 1
	memory cluster 0
	memory solo 0
fi

if [[ " $PHASES " == *" failover "* ]]; then
	start_cluster failover
	sample "$OUT/failover-samples.txt" &
	sampler=$!
	admins="127.0.0.1:$(port 1 1),127.0.0.1:$(port 2 1),127.0.0.1:$(port 3 1)"
	exec 9>>"$LOCK"
	flock 9
	echo "failover: load $(cut -d' ' -f1-3 /proc/loadavg); bench failover: ${FO_ACTION:-kill} of node 3 (pid ${pid[n3]}) ${FO_KILL_AT}s into the traffic" |
		tee -a "$OUT/log.txt" >&2
	fo_status=0
	c0=$(cpustat)
	"$BIN" bench failover --addr "$all" --admin "$admins" --"${FO_ACTION:-kill}-pid" "${pid[n3]}" --victim-index 2 \
		--clients "$FO_CLIENTS" --rate "$FO_RATE" --mode "$FO_MODE" --kill-at "${FO_KILL_AT}s" \
		--duration "$FO_DURATION" --grace 7s --json "$OUT/failover.json" --client-log "$OUT/failover-clients.log" >"$OUT/failover.txt" 2>&1 || fo_status=$?
	flock -u 9
	exec 9>&-
	sed 's/^/failover: /' "$OUT/failover.txt" | tee -a "$OUT/log.txt" >&2
	echo "failover: steal $(steal_since "$c0")% of the machine's CPU over the run" | tee -a "$OUT/log.txt" >&2
	echo "failover: bench failover exit $fo_status (1: a lost, duplicate or two-outcome message, a victim's name lost or never reachable again, a name with two owners, a failed or inconsistent scan, or a failed run)" |
		tee -a "$OUT/log.txt" >&2
	for i in 1 2; do curl -s "http://127.0.0.1:$(port "$i" 1)/metrics" >"$OUT/failover-metrics-node$i.txt" || true; done
	if [ "${FO_ACTION:-kill}" = drain ]; then stop n3; else unset "pid[n3]"; fi # a drained node exits by itself
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	sampler=
	for i in 1 2; do stop n$i; done
fi
if [[ " $PHASES " == *" sigstop "* ]]; then
	SS_STOP=${SS_STOP:-30s}
	SS_NAMES=${SS_NAMES:-30}
	SS_DURATION=${SS_DURATION:-60s}
	go build -o "$tmp/sigstop" ./bench/sigstop
	SERVE_FLAGS="${SERVE_FLAGS:-} ${SS_FLAGS:---idle-timeout 6s}" start_cluster sigstop
	admins="127.0.0.1:$(port 1 1),127.0.0.1:$(port 2 1),127.0.0.1:$(port 3 1)"
	exec 8>>"$LOCK"
	flock 8
	echo "sigstop: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/log.txt" >&2
	"$BIN" bench route --mode request --rate "$FO_RATE" --conns "$CONNS" --addr "$all" --server-pid "${pid[n1]}" \
		--duration "$SS_DURATION" --grace 7s --json "$OUT/sigstop-route.json" >"$OUT/sigstop-route.txt" 2>&1 &
	benchpid=$!
	sleep 3 # the bench connects first
	"$tmp/sigstop" --addrs "$all" --admins "$admins" --pid "${pid[n3]}" --stop-for "$SS_STOP" --names "$SS_NAMES" \
		--timeout 3m 2>&1 | sed 's/^/sigstop: /' | tee -a "$OUT/log.txt" >&2 || true
	# The woken node 3 fences itself and exits 1; a supervisor restarts it.
	p3=${pid[n3]}
	for _ in $(seq 300); do kill -0 "$p3" 2>/dev/null || break; sleep 0.1; done
	code=0
	wait "$p3" 2>/dev/null || code=$?
	unset "pid[n3]"
	echo "sigstop: node 3 exit code $code at $(date -u +%T.%N)" | tee -a "$OUT/log.txt" >&2
	t0=$(date +%s.%N)
	SERVE_FLAGS="${SERVE_FLAGS:-} ${SS_FLAGS:---idle-timeout 6s}" start_node 3 sigstop-restart
	for _ in $(seq 600); do
		ready "127.0.0.1:$(port 3 1)" && break
		sleep 0.1
	done
	echo "sigstop: node 3 restarted, /readyz $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(port 3 1)/readyz") after $(echo "$(date +%s.%N) - $t0" | bc) s" | tee -a "$OUT/log.txt" >&2
	wait "$benchpid" || true
	flock -u 8
	exec 8>&-
	grep -E '^\[|errors|TIMEOUT|NO_ROUTE' "$OUT/sigstop-route.txt" | tail -80 >"$OUT/sigstop-route-errors.txt" || true
	for i in 1 2 3; do stop n$i; done
fi
# hold_sample FILE: every HOLD_SAMPLE seconds one line: unix time, then per running node
# its key, RSS, RssAnon, RssFile (KiB), connections, names owned, Go heap in use and the
# next GC target (bytes).
hold_sample() {
	while :; do
		local line k
		line="$(date +%s)"
		for k in $(nodes); do
			local m
			m=$({ curl -s "http://$(admin_of "$k")/metrics" || true; } | awk '
				$1 == "switchboard_connections" {c = $2} $1 == "switchboard_registry_names" {n = $2}
				$1 == "go_memstats_heap_inuse_bytes" {h = $2} $1 == "go_memstats_next_gc_bytes" {g = $2}
				END {printf "%d %d %d %d", c, n, h, g}')
			line+=" $k $(awk '/^VmRSS/{r=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} END{printf "%d %d %d", r, a, f}' "/proc/${pid[$k]}/status" 2>/dev/null || echo "0 0 0") $m"
		done
		echo "$line" >>"$1"
		sleep "$HOLD_SAMPLE"
	done
}

if [[ " $PHASES " == *" hold "* ]]; then
	if [ "$HOLD_NODES" -gt 6 ] || [ "$HOLD_JS" -lt 1 ] || [ "$HOLD_JS" -gt "$HOLD_NODES" ]; then
		echo "hold: want HOLD_NODES 1..6 and HOLD_JS 1..HOLD_NODES" >&2
		exit 2
	fi
	hold_routes="" hold_addrs=""
	for i in $(seq "$HOLD_NODES"); do
		hold_routes+="${hold_routes:+,}127.0.0.1:$(port "$i" 2)"
		hold_addrs+="${hold_addrs:+,}127.0.0.1:$(port "$i" 0)"
	done
	# The whole phase holds the lock: RSS over minutes is what it measures.
	exec 8>>"$LOCK"
	flock 8
	{ echo "hold: $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"; echo "hold: $HOLD_NODES nodes, $HOLD_JS with JetStream, $HOLD_CONNS connections (register $HOLD_REGISTER, reconnect $HOLD_RECONNECT), $HOLD_PROCS processes, hold $HOLD, SERVE_FLAGS='${SERVE_FLAGS:-}' NODE_ENV='${NODE_ENV:-}' idle-timeout $HOLD_IDLE_TIMEOUT, beside $HOLD_BESIDE (stop $HOLD_BESIDE_STOP)"; } | tee -a "$OUT/log.txt" >&2
	if [ "$HOLD_BESIDE" != 0 ]; then
		# Each in a session of its own (setsid): a stopped process in a process group that
		# becomes orphaned (this script's parent shell exits) gets SIGHUP and SIGCONT.
		beside_addrs=""
		for i in 1 2 3 4 5 6; do
			setsid "$BIN" serve --listen "127.0.0.1:$(beside_port "$i" 0)" --admin "127.0.0.1:$(beside_port "$i" 1)" \
				--idle-timeout 1h --loop-lag-budget 1h >"$OUT/hold-beside-node$i.log" 2>&1 &
			pid[b$i]=$!
			beside_addrs+="${beside_addrs:+,}127.0.0.1:$(beside_port "$i" 0)"
		done
		for i in 1 2 3 4 5 6; do
			for _ in $(seq 100); do
				ready "127.0.0.1:$(beside_port "$i" 1)" && break
				sleep 0.1
			done
		done
		# held until the end of the phase (then stopped), an hour at most
		setsid "$BIN" bench connect --conns "$HOLD_BESIDE" --procs 6 --addr "$beside_addrs" --keepalive "$HOLD_KEEPALIVE" \
			--duration 1h --timeout 60s >"$OUT/hold-beside.txt" 2>"$OUT/hold-beside.stderr" &
		pid[bh]=$!
		for _ in $(seq 300); do
			grep -q "connections established" "$OUT/hold-beside.stderr" 2>/dev/null && break
			kill -0 "${pid[bh]}" 2>/dev/null || break
			sleep 1
		done
		{ grep -h "connections established" "$OUT/hold-beside.stderr" || echo "beside: bench connect did not report its connections"; } |
			sed 's/^/hold: beside: /' | tee -a "$OUT/log.txt" >&2
		if [ "$HOLD_BESIDE_STOP" = 1 ]; then
			for k in b1 b2 b3 b4 b5 b6 bh; do
				# shellcheck disable=SC2046 # the children's pids, one word each
				kill -STOP "${pid[$k]}" $(pgrep -P "${pid[$k]}" 2>/dev/null) 2>/dev/null || true
			done
			echo "hold: beside: the six plain nodes and their holders SIGSTOPped" | tee -a "$OUT/log.txt" >&2
		fi
	fi
	SERVE_FLAGS="--idle-timeout $HOLD_IDLE_TIMEOUT ${SERVE_FLAGS:-}" start_cluster hold "$HOLD_NODES" "$HOLD_JS" "$hold_routes"
	sleep 10
	tag="hold: idle RSS KiB"
	for k in $(nodes); do tag+=" $k $(rss_kb "${pid[$k]}")"; done
	echo "$tag" | tee -a "$OUT/log.txt" >&2
	hold_sample "$OUT/hold-samples.txt" &
	sampler=$!
	reg=()
	[ "$HOLD_REGISTER" = 1 ] && reg=(--register)
	[ "$HOLD_RECONNECT" = 1 ] && reg+=(--reconnect)
	"$BIN" bench connect "${reg[@]}" --conns "$HOLD_CONNS" --procs "$HOLD_PROCS" --addr "$hold_addrs" --keepalive "$HOLD_KEEPALIVE" \
		--server-pid "${pid[n1]}" --duration "$HOLD" --timeout 60s --json "$OUT/hold.json" \
		>"$OUT/hold.txt" 2>"$OUT/hold.stderr" &
	holder=$!
	if [ "$HOLD_RATE" != 0 ] || [ "$HOLD_KILL" != 0 ]; then
		# Routed load while every connection and name is held: wait until the nodes count
		# them all, then run open-loop `bench route` for HOLD_LOAD_FOR.
		held=0
		for _ in $(seq 3000); do
			kill -0 "$holder" 2>/dev/null || break
			c=0 nm=0
			for k in $(nodes); do
				c=$((c + $(metric "$(admin_of "$k")" switchboard_connections)))
				nm=$((nm + $(metric "$(admin_of "$k")" switchboard_registry_names)))
			done
			if [ "$c" -ge "$HOLD_CONNS" ] && { [ "$HOLD_REGISTER" = 0 ] || [ "$nm" -ge "$HOLD_CONNS" ]; }; then
				held=1
				break
			fi
			sleep 1
		done
		if [ "$held" = 1 ]; then
			# the nodes' CPU with every connection held and no load (keepalives, leases,
			# watches, the collector): the floor under the loads' figures
			c0=$(cpustat)
			b0=$(state)
			sleep 20
			b1=$(state)
			python3 - "$b0" "$b1" "$(steal_since "$c0")" <<'PY' | tee -a "$OUT/log.txt" >&2
import json, sys
b, a = json.loads(sys.argv[1]), json.loads(sys.argv[2])
per = {k: (a[k]["ticks"] - b[k]["ticks"]) / 100 / 20 for k in a if k in b}
print("hold: nodes' CPU with every connection held, no load: %.2f cores in all (%s); steal %s%% of the machine's CPU" % (
    sum(per.values()), " ".join("%s %.3f" % kv for kv in per.items()), sys.argv[3]))
PY
			[ "$HOLD_RATE" = 0 ] && HOLD_RATE=
			for rate in $HOLD_RATE; do
				echo "hold: $(date -u +%T) every connection held; load $(cut -d' ' -f1-3 /proc/loadavg); routed load $HOLD_LOAD_MODE at $rate msgs/s over $HOLD_LOAD_CONNS more connections for $HOLD_LOAD_FOR" | tee -a "$OUT/log.txt" >&2
				c0=$(cpustat)
				b0=$(state)
				"$BIN" bench route --mode "$HOLD_LOAD_MODE" --rate "$rate" --conns "$HOLD_LOAD_CONNS" --addr "$hold_addrs" \
					--server-pid "${pid[n1]}" --duration "$HOLD_LOAD_FOR" --grace 10s --json "$OUT/hold-load-$rate.json" \
					>"$OUT/hold-load-$rate.txt" 2>&1 || echo "hold: bench route exited with $?" | tee -a "$OUT/log.txt" >&2
				b1=$(state)
				python3 - "$OUT/hold-load-$rate.json" "$b0" "$b1" "$(steal_since "$c0")" <<'PY' | tee -a "$OUT/log.txt" >&2
import json, sys
m = json.load(open(sys.argv[1])); n = m["messages"]; l = m["latency_us"]
b, a = json.loads(sys.argv[2]), json.loads(sys.argv[3])
steal = sys.argv[4]
cpu = sum(a[k]["ticks"] - b[k]["ticks"] for k in a if k in b) / 100
fwd = sum(a[k]["fwd"] - b[k]["fwd"] for k in a if k in b)
print("hold: load %.0f msgs/s, p50 %.0f p95 %.0f p99 %.0f max %.0f us, sent %d received %d lost %d errors %s; nodes' CPU %.1f s (%.1f us/msg), %d forwarded across nodes; load generator CPU %.1f s; steal %s%% of the machine's CPU" % (
    m["throughput_msgs_per_s"], l["p50"], l["p95"], l["p99"], l.get("max", 0), n["sent"], n["received"], n["lost"],
    n["errors_by_code"], cpu, cpu * 1e6 / max(n["received"], 1), fwd, m["load_generator"]["cpu_seconds"], steal))
PY
			done
			if [ "$HOLD_KILL" = names-leader ]; then
				# the node that became the names bucket's stream leader last (each node
				# logs it when it does)
				HOLD_KILL=$(for i in $(seq "$HOLD_NODES"); do
					{ grep -h "new stream leader for '\$G > KV_switchboard_names_" "$OUT/hold-node$i.log" || true; } | tail -1 |
						sed -n "s/^time=\([^ ]*\) .*/\1 $i/p"
				done | sort | tail -1 | cut -d' ' -f2)
				echo "hold: the names bucket's leader is node ${HOLD_KILL:-unknown}" | tee -a "$OUT/log.txt" >&2
				[ -n "$HOLD_KILL" ] || HOLD_KILL=0
			fi
			if [ "$HOLD_KILL" != 0 ]; then
				# kill -9 of node HOLD_KILL under a failover load: Go clients that reconnect,
				# their names' reachability, accounting, and the survivors' directory scan
				hold_admins="" victim_idx=$((HOLD_KILL - 1))
				for i in $(seq "$HOLD_NODES"); do hold_admins+="${hold_admins:+,}127.0.0.1:$(port "$i" 1)"; done
				echo "hold: $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg); bench failover: ${FO_ACTION:-kill} of node $HOLD_KILL (pid ${pid[n$HOLD_KILL]}) under $FO_MODE at $FO_RATE msgs/s from $FO_CLIENTS clients" | tee -a "$OUT/log.txt" >&2
				fo_status=0
				roles=
				if [ "$HOLD_CPU_ROLES" = 1 ]; then
					# bounded: it stops by itself after 10 minutes, and is stopped after the run
					python3 scripts/cpu-roles.py sample "$BIN" 600 0.25 "$OUT/hold-cpu-roles.txt" &
					roles=$!
				fi
				c0=$(cpustat)
				"$BIN" bench failover --addr "$hold_addrs" --admin "$hold_admins" --"${FO_ACTION:-kill}-pid" "${pid[n$HOLD_KILL]}" \
					--victim-index "$victim_idx" --clients "$FO_CLIENTS" --rate "$FO_RATE" --mode "$FO_MODE" \
					--kill-at "${FO_KILL_AT}s" --duration "$FO_DURATION" --grace 7s --scan-timeout 60s \
					--json "$OUT/hold-failover.json" --client-log "$OUT/hold-failover-clients.log" >"$OUT/hold-failover.txt" 2>&1 || fo_status=$?
				echo "hold: failover: steal $(steal_since "$c0")% of the machine's CPU over the run" | tee -a "$OUT/log.txt" >&2
				if [ -n "$roles" ]; then
					kill "$roles" 2>/dev/null || true
					wait "$roles" 2>/dev/null || true
					python3 scripts/cpu-roles.py report "$OUT/hold-cpu-roles.txt" "node$HOLD_KILL" 2>&1 |
						sed 's/^/hold: /' | tee -a "$OUT/log.txt" >&2 || true
				fi
				unset "pid[n$HOLD_KILL]"
				sed 's/^/hold: failover: /' "$OUT/hold-failover.txt" | tee -a "$OUT/log.txt" >&2
				echo "hold: bench failover exit $fo_status" | tee -a "$OUT/log.txt" >&2
			fi
		else
			echo "hold: the connections were never all held; no routed load" | tee -a "$OUT/log.txt" >&2
		fi
	fi
	wait "$holder" || echo "hold: bench connect exited with $?" | tee -a "$OUT/log.txt" >&2
	# the end of the hold: every node's metrics (and heap profile) before anything closes
	for k in $(nodes); do
		curl -s "http://$(admin_of "$k")/metrics" >"$OUT/hold-metrics-$k.txt" || true
		grep -E '^(VmRSS|RssAnon|RssFile|RssShmem|VmHWM)' "/proc/${pid[$k]}/status" >"$OUT/hold-status-$k.txt" || true
		if [ "$HOLD_PROFILE" = 1 ]; then
			curl -s "http://$(admin_of "$k")/debug/pprof/heap" >"$OUT/hold-heap-$k.pb.gz" || true
		fi
	done
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	sampler=
	grep -E "established|refused|failed|load starts|held" "$OUT/hold.stderr" | tail -5 | sed 's/^/hold: bench: /' | tee -a "$OUT/log.txt" >&2 || true
	# --reconnect: the held connections' losses and how long they took to come back
	grep -E "^  reconnect " "$OUT/hold.txt" | sed 's/^  /hold: bench: /' | tee -a "$OUT/log.txt" >&2 || true
	for i in $(seq "$HOLD_JS"); do echo "hold: store dir n$i $(du -sk "$tmp/store$i" 2>/dev/null | cut -f1) KiB" | tee -a "$OUT/log.txt" >&2; done
	for i in $(seq "$HOLD_NODES"); do stop "n$i"; done
	if [ "$HOLD_BESIDE" != 0 ]; then
		beside_cont
		for k in bh b1 b2 b3 b4 b5 b6; do stop "$k"; done
	fi
	flock -u 8
	exec 8>&-
	python3 - "$OUT/hold-samples.txt" "$HOLD_SAMPLE" "$HOLD_REGISTER" "$HOLD_CONNS" <<'PY' | tee -a "$OUT/log.txt" >&2
import sys, statistics as st
# Per node: RSS while every connection was held (the samples whose total connections are
# the run's maximum and whose names are all registered): first, median, last, max; over
# the last 8 minutes min, max and the least-squares trend.
rows = []
for line in open(sys.argv[1]):
    f = line.split()
    t, nodes = int(f[0]), {}
    for i in range(1, len(f), 8):
        k = f[i]
        rss, anon, file_, conns, names, heap, nextgc = map(int, f[i + 1:i + 8])
        nodes[k] = dict(rss=rss, anon=anon, file=file_, conns=conns, names=names, heap=heap, nextgc=nextgc)
    rows.append((t, nodes))
# the held connections (a routed load's own connections come and go on top of them)
peak = min(max(sum(v["conns"] for v in n.values()) for _, n in rows), int(sys.argv[4]))
reg = sys.argv[3] == "1"
held = [(t, n) for t, n in rows if sum(v["conns"] for v in n.values()) >= peak * 0.999 and (not reg or sum(v["names"] for v in n.values()) >= peak * 0.999)]
if not held:
    print("hold: no sample with every connection and name held"); sys.exit()
t0 = held[0][0]
print("hold: %d samples with all %d connections and names held, over %d s" % (len(held), peak, held[-1][0] - t0))
tail_from = held[-1][0] - 480  # the last 8 minutes of the hold (all of it when shorter)
for k in held[0][1]:
    r = [n[k]["rss"] / 1024 for _, n in held if k in n]
    last8 = [n[k]["rss"] / 1024 for t, n in held if k in n and t >= tail_from]
    ts = [t for t, n in held if k in n and t >= tail_from]
    # least-squares slope of RSS over those samples: a leak shows as a trend, a collector's
    # sawtooth as spread around a flat line
    tm, rm = st.mean(ts), st.mean(last8)
    den = sum((t - tm) ** 2 for t in ts)
    slope = sum((t - tm) * (r - rm) for t, r in zip(ts, last8)) / den * 60 if den else 0.0
    print("hold: %s last %d s: RSS MiB min %.1f max %.1f (spread %.1f), trend %+.2f MiB/min, %d samples" % (
        k, held[-1][0] - max(tail_from, t0), min(last8), max(last8), max(last8) - min(last8), slope, len(last8)))
    half = r[len(r) // 2:]
    print("hold: %s RSS MiB first %.1f median %.1f last %.1f max %.1f; second half min %.1f max %.1f; anon %.1f file %.1f; heap in use %.1f MiB, next GC %.1f MiB; conns %d names %d" % (
        k, r[0], st.median(r), r[-1], max(r), min(half), max(half), held[-1][1][k]["anon"] / 1024, held[-1][1][k]["file"] / 1024,
        held[-1][1][k]["heap"] / 2**20, held[-1][1][k]["nextgc"] / 2**20, held[-1][1][k]["conns"], held[-1][1][k]["names"]))
PY
fi

# Medians per run label, and cluster/solo ratios of the same round.
[ -s "$OUT/runs.jsonl" ] || { echo "done: $OUT" >&2; exit 0; }
python3 - "$OUT/runs.jsonl" <<'PY' | tee "$OUT/summary.txt" >&2
import json, sys, statistics as st
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = [r for r in runs if "error" not in r and r["phase"] in ("route", "latency")]
by = {}
for r in runs:
    by.setdefault((r["phase"], r["label"]), []).append(r)
for (ph, lab), rs in sorted(by.items()):
    med = lambda f: st.median(f(r) for r in rs)
    # server CPU per message received, summed over the nodes the run used
    used = ["solo"] if "solo" in lab else ["n1"] if lab == "same-node" else ["n1", "n2", "n3"]
    cpu = med(lambda r: sum(r["nodes"][k]["cpu_s"] for k in used) * 1e6 / max(r["received"], 1))
    print("%-8s %-17s n=%d msgs/s %s median %.0f | server CPU %.1f us/msg | p50 median %.0f p95 %.0f p99 %.0f us | lost %s | errors %s" % (
        ph, lab, len(rs), [round(r["tput"]) for r in rs], med(lambda r: r["tput"]), cpu, med(lambda r: r["lat"]["p50"]),
        med(lambda r: r["lat"]["p95"]), med(lambda r: r["lat"]["p99"]), [r["lost"] for r in rs],
        [r["errors"] for r in rs]))
rounds = {}
for r in runs:
    rounds.setdefault(r["round"], {})[(r["phase"], r["label"])] = r
for ph, a, b in (("route", "send-cluster3", "send-solo"), ("route", "request-cluster3", "request-solo"),
                 ("latency", "same-node", "solo"), ("latency", "cluster3", "same-node")):
    xs = [(v[(ph, a)], v[(ph, b)]) for v in rounds.values() if (ph, a) in v and (ph, b) in v]
    if not xs:
        continue
    t = [x["tput"] / y["tput"] for x, y in xs]
    p50 = [x["lat"]["p50"] / max(y["lat"]["p50"], 1) for x, y in xs]
    p99 = [x["lat"]["p99"] / max(y["lat"]["p99"], 1) for x, y in xs]
    print("%s %s / %s, same round: msgs/s %s (median %.2f), p50 %s (median %.2f), p99 %s (median %.2f)" % (
        ph, a, b, [round(v, 2) for v in t], st.median(t), [round(v, 2) for v in p50], st.median(p50),
        [round(v, 2) for v in p99], st.median(p99)))
PY
echo "done: $OUT" >&2
