# Sourced by the A/B scripts (echo-ab.sh, route-ab.sh): starts the OLD and NEW server
# builds once on 127.0.0.1, each on a port of its own, and stops them on exit.
# Expects old and new (binaries); sets tmp, oaddr, opid, naddr, npid, and defines
# cpustat and steal_since (steal.sh). OLD_FLAGS and NEW_FLAGS are added to each one's
# serve command (one binary with two settings: OLD_FLAGS="--route-credit off"
# scripts/route-ab.sh BIN BIN). A binary named routefloor (go build -o DIR/routefloor
# ./scripts/routefloor) is started as the routing floor instead of `serve`.
# shellcheck source=scripts/steal.sh
. "$(dirname "${BASH_SOURCE[0]}")/steal.sh"
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$tmp"' EXIT
start() { # binary label flags -> "addr pid"
	# shellcheck disable=SC2086 # the flags are words
	if [ "$(basename "$1")" = routefloor ]; then # scripts/routefloor: the routing floor
		"$1" --listen 127.0.0.1:0 $3 >"$tmp/$2.log" 2>&1 &
	else
		"$1" serve --listen 127.0.0.1:0 --admin off --log-format json $3 >"$tmp/$2.log" 2>&1 &
	fi
	local pid=$! addr=""
	for _ in $(seq 100); do
		addr=$(grep -o '"addr":"[^"]*"' "$tmp/$2.log" | head -1 | cut -d'"' -f4 || true)
		[ -n "$addr" ] && break
		sleep 0.1
	done
	echo "$addr $pid"
}
read -r oaddr opid < <(start "$old" old "${OLD_FLAGS:-}")
read -r naddr npid < <(start "$new" new "${NEW_FLAGS:-}")
pids=("$opid" "$npid")
