#!/usr/bin/env bash
# Prints the per-suite table and the closing `N passed, N failed` line.
set -u
f=${1:-build/test-results.txt}
[ -f "$f" ] || { echo "0 passed, 1 failed"; exit 1; }
awk '{ printf "  %-6s %-34s %5d passed %3d failed\n", $1, $2, $3, $4; p += $3; x += $4 }
     END { printf "%d passed, %d failed\n", p, x; exit (x > 0) }' "$f"
