#!/usr/bin/env bash
# Runs every test of the root module with the race detector, as make test
# does. The end-to-end tests (package e2e) spend their time waiting on
# brokers, members and timeouts far more than on the CPU, so the package
# runs as two halves at once, beside the other packages: each half is one
# `go test` of ./e2e/, the first with -run over the tests of the files
# listed below, the second with -skip over the same tests, so every test
# runs in exactly one half, a new one included. Each part's output is
# printed as the part ends; the script fails if any part failed.
set -uo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"
flags=(-race -count=1 -timeout 25m)

# The longest-running files, about half the package's time.
first_half=(rebalance standby windows restore follow zombie chaos)
names=$(for f in "${first_half[@]}"; do sed -n 's/^func \(Test[A-Za-z0-9_]*\)(t \*testing\.T).*/\1/p' "e2e/${f}_test.go"; done | paste -sd'|')
pattern="^(${names})\$"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
declare -A part
packages=$("$GO" list ./... | grep -v '/e2e$')
# shellcheck disable=SC2086 # one argument per package
"$GO" test "${flags[@]}" $packages >"$logs/packages" 2>&1 &
part[$!]=packages
"$GO" test "${flags[@]}" -run "$pattern" ./e2e/ >"$logs/e2e-first-half" 2>&1 &
part[$!]=e2e-first-half
"$GO" test "${flags[@]}" -skip "$pattern" ./e2e/ >"$logs/e2e-second-half" 2>&1 &
part[$!]=e2e-second-half

status=0
for _ in 1 2 3; do
	wait -n -p done
	rc=$?
	name=${part[$done]}
	echo "== $name (exit $rc)"
	cat "$logs/$name"
	[ "$rc" = 0 ] || status=1
done
exit $status
