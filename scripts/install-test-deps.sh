#!/usr/bin/env bash
# Installs what `make test` needs and a fresh Debian machine with Go lacks:
# kcat, a C compiler, Node.js/npm, Chromium and promtool (Debian's
# prometheus package: the chart's alert tests run promtool) from Debian's
# archive (only those missing; apt-get needs root), then the chart tools
# (scripts/install-chart-tools.sh: helm, dockerfilelint). Idempotent: a
# machine that has everything installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v kcat >/dev/null 2>&1 || apt_packages+=(kcat)
command -v gcc >/dev/null 2>&1 || apt_packages+=(gcc libc6-dev)
command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)
command -v promtool >/dev/null 2>&1 || apt_packages+=(prometheus)
if [ ${#apt_packages[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-test-deps: missing ${apt_packages[*]}; install them (apt-get install ${apt_packages[*]}) or run as root" >&2
		exit 1
	fi
	echo "install-test-deps: installing ${apt_packages[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi
bash scripts/install-chart-tools.sh
