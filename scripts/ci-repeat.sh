#!/usr/bin/env bash
# Runs CI (.ci/run) N times in a row, each time on a fresh clone of HEAD, the way CI runs
# it, and prints how many runs were green. HOG=1 keeps every core busy with a spin loop
# during the runs, to shake out tests that depend on the machine's speed.
#
#   scripts/ci-repeat.sh 10          # or: make ci-repeat N=10
#   HOG=1 scripts/ci-repeat.sh 5     # or: make ci-repeat N=5 HOG=1
#
# Logs of every run stay in $OUT (default /tmp/switchboard-ci-repeat): run-K.log.
set -uo pipefail
n=${1:-10}
top=$(git rev-parse --show-toplevel)
rev=$(git -C "$top" rev-parse HEAD) # every run tests this commit, even if HEAD moves meanwhile
out=${OUT:-/tmp/switchboard-ci-repeat}
rm -rf "$out"
mkdir -p "$out"

hogs=()
stop_hogs() {
	for p in "${hogs[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap stop_hogs EXIT
if [ "${HOG:-0}" = 1 ]; then
	for _ in $(seq "$(nproc)"); do
		sh -c 'while :; do :; done' &
		hogs+=($!)
	done
	echo "ci-repeat: $(nproc) spin loops keep the cores busy" >&2
fi

green=0
for k in $(seq "$n"); do
	dir="$out/clone-$k"
	git clone --quiet "$top" "$dir" && git -C "$dir" checkout --quiet "$rev"
	start=$(date +%s)
	if (cd "$dir" && CI=true bash .ci/run) >"$out/run-$k.log" 2>&1 </dev/null; then
		green=$((green + 1))
		verdict=green
	else
		verdict="RED (see $out/run-$k.log)"
		grep -E '^(--- FAIL|FAIL|panic:)|_test.go:[0-9]+:' "$out/run-$k.log" | head -20 >&2
	fi
	echo "ci-repeat: run $k of $n: $verdict in $(($(date +%s) - start)) s" >&2
	rm -rf "$dir"
done
echo "ci-repeat: $green of $n runs green (commit ${rev:0:7}, HOG=${HOG:-0})"
[ "$green" -eq "$n" ]
