#!/usr/bin/env bash
# Runs every fuzz target in the module briefly (default 30000 executions
# each; a count, not a duration: a duration that ends while a worker is
# busy makes the Go fuzzing engine fail with "context deadline exceeded"),
# on top of its committed corpus under testdata/fuzz/.
set -euo pipefail
t=${1:-30000x}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for name in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $name ($t)"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log; exit 1; }
	done
done
rm -f /tmp/fuzz.$$.log
