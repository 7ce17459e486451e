#!/usr/bin/env bash
# Benchmarks: each runs vmmount and its peer (qemu-img, kernel loop mount,
# libguestfs where installed) on the same data in the same run and prints the
# ratio. Figures are noisy on shared machines; read them as ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
export VMMOUNT_BENCH=1
go test -run '^$' -bench . -benchtime 1x -timeout 120m ./... 2>&1 | grep -Ev '^(PASS|ok|\?)' || true
