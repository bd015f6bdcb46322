#!/usr/bin/env bash
# Installs the tools `make chart-test` needs, and nothing else:
#   - helm, built from source with `go install` into $(go env GOPATH)/bin
#     (which need not be on PATH: the Makefile looks there);
#   - dockerfilelint, from the npm registry, into test/chart/.tools
#     (git-ignored), so the machine's global npm prefix is left alone.
#
# Idempotent: a tool already installed at the pinned version is kept. Needs
# only Go and Node.js/npm (a fresh Debian machine as root is enough).
#
# Override the versions with HELM_VERSION and DOCKERFILELINT_VERSION.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
DOCKERFILELINT_VERSION="${DOCKERFILELINT_VERSION:-1.8.0}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
gobin="$(go env GOPATH | cut -d: -f1)/bin"
tools="$root/test/chart/.tools"

need() {
	command -v "$1" >/dev/null 2>&1 || {
		echo "install-chart-tools: $1 is needed but not found; $2" >&2
		exit 1
	}
}
need go "install Go from https://go.dev/dl"
need npm "install Node.js and npm (Debian: apt-get install nodejs npm)"

# helm: go install stamps the module version into the binary, which
# `go version -m` reads back, so the check does not depend on helm's own
# version output.
if [ -x "$gobin/helm" ] &&
	go version -m "$gobin/helm" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+helm\.sh/helm/v3[[:space:]]+${HELM_VERSION}[[:space:]]"; then
	echo "helm ${HELM_VERSION}: already at $gobin/helm"
else
	echo "helm ${HELM_VERSION}: building with go install (a few minutes)..."
	GOBIN="$gobin" go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
	echo "helm ${HELM_VERSION}: installed at $gobin/helm"
fi

# dockerfilelint: a local npm prefix; the installed package.json tells the
# version.
installed=""
if [ -f "$tools/node_modules/dockerfilelint/package.json" ]; then
	installed="$(node -p 'require(process.argv[1]).version' "$tools/node_modules/dockerfilelint/package.json" 2>/dev/null || true)"
fi
if [ "$installed" = "$DOCKERFILELINT_VERSION" ] && [ -x "$tools/node_modules/.bin/dockerfilelint" ]; then
	echo "dockerfilelint ${DOCKERFILELINT_VERSION}: already in $tools"
else
	echo "dockerfilelint ${DOCKERFILELINT_VERSION}: installing into $tools..."
	mkdir -p "$tools"
	# A package.json of its own keeps npm from walking up to another project.
	[ -f "$tools/package.json" ] || echo '{"name": "abacus-chart-tools", "private": true}' >"$tools/package.json"
	npm install --prefix "$tools" --no-audit --no-fund --no-save --loglevel=error \
		"dockerfilelint@${DOCKERFILELINT_VERSION}"
	echo "dockerfilelint ${DOCKERFILELINT_VERSION}: installed"
fi

# The test module's dependencies, so that the first `make chart-test` does
# not stop to download them.
(cd "$root/test/chart" && go mod download)

echo "chart tools ready: run make chart-test"
