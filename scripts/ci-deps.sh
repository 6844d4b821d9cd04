#!/usr/bin/env bash
# Installs what the tests need beyond Go modules. Idempotent: prints nothing and does
# nothing when every tool is already installed. Run by .ci/run before `make ci`.
#
#   promtool   checks and unit-tests deploy/prometheus/*.yml (deploy/deploy_test.go);
#              Debian package "prometheus" (2.42 on bookworm). A cold install
#              (apt-get update + the package) took ~11 s on the development VM.
#   haproxy    the TLS edge in front of a real server (deploy/haproxy_test.go, which runs
#              deploy/haproxy/haproxy.cfg); Debian package "haproxy" (2.6 on bookworm),
#              ~13 s cold. It is only run in the foreground by the test, never as a service.
#   node, npm  build and test the TypeScript client in clients/node (make node-test);
#              Debian packages "nodejs" (18.x on bookworm; the client needs ≥ 18) and
#              "npm". The client's own dev dependencies (typescript, @types/node, pinned in
#              clients/node/package-lock.json) are installed by `npm ci` in make node-test.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "ci-deps: need root or sudo to install: ${need[*]}" >&2
		exit 1
	fi
	sudo=(sudo)
fi

echo "ci-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for tool in promtool haproxy node npm; do
	command -v "$tool" >/dev/null 2>&1 || { echo "ci-deps: $tool still missing after install" >&2; exit 1; }
done
echo "ci-deps: promtool $(promtool --version 2>&1 | head -1); node $(node --version); npm $(npm --version)" >&2
echo "ci-deps: $(haproxy -v 2>&1 | head -1)" >&2
