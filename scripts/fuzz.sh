#!/usr/bin/env bash
# Runs every Fuzz* target in the module for the given time each (default 30s).
set -euo pipefail
time=${1:-30s}
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for fn in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "== $pkg $fn ($time)"
		# A short minimization budget: the default (60s per new input) can
		# take a whole run for targets that parse a whole image per input.
		go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$time" -fuzzminimizetime 5s "$pkg"
	done
done
