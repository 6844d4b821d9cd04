#!/usr/bin/env bash
# Two network namespaces joined by a veth pair, for the handshake-flood measurement of
# docs/BENCHMARKS.md: the node and its clients in one ("sbnode", CPU 0), the flooder in the
# other ("sbatk", CPU 1), as on two machines. Each side's kernel receive processing runs on
# its own CPU (RPS on each end of the pair), so the flooder's packets cost the node's CPU
# what they would cost a node on another machine, and the flooder's own work stays on CPU 1.
# Needs root and 2 CPUs.
#
#   scripts/flood-netns.sh up [default|deploy]   create them; "deploy" applies deploy/sysctl.d's
#                                                listen backlog in sbnode (default: the kernel's)
#   scripts/flood-netns.sh down                  remove them
#
# Then: ip netns exec sbnode env PIN=1 FLOOD_NS=sbatk scripts/authbench.sh 0
set -euo pipefail
N=sbnode A=sbatk
case ${1:-} in
up)
	ip netns add $N
	ip netns add $A
	ip link add sbn0 type veth peer name sba0
	ip link set sbn0 netns $N
	ip link set sba0 netns $A
	ip -n $N link set lo up
	ip -n $A link set lo up
	ip -n $N addr add 10.77.0.1/16 dev sbn0
	# The flooder's source addresses: 10.77.1.1 upwards, one per 250 connections.
	for i in $(seq 1 40); do ip -n $A addr add "10.77.1.$i/16" dev sba0; done
	ip -n $N link set sbn0 up
	ip -n $A link set sba0 up
	ip netns exec $N sh -c 'echo 1 >/sys/class/net/sbn0/queues/rx-0/rps_cpus; echo 1 >/sys/class/net/lo/queues/rx-0/rps_cpus'
	ip netns exec $A sh -c 'echo 2 >/sys/class/net/sba0/queues/rx-0/rps_cpus; echo 2 >/sys/class/net/lo/queues/rx-0/rps_cpus'
	if [ "${2:-default}" = deploy ]; then
		ip netns exec $N sysctl -q -w net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
	fi
	ip netns exec $N sysctl net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.ipv4.tcp_syncookies
	;;
down)
	ip netns del $N 2>/dev/null || true
	ip netns del $A 2>/dev/null || true
	;;
*)
	echo "usage: $0 up [default|deploy] | down" >&2
	exit 2
	;;
esac
