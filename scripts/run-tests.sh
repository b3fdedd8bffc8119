#!/usr/bin/env bash
# Runs Criterion test binaries one after another and appends each one's
# counts to build/test-results.txt, so `make test` can print one total.
# Usage: run-tests.sh LABEL BIN...
set -u
label=$1; shift
results=build/test-results.txt
mkdir -p build
status=0
for bin in "$@"; do
  name=$(basename "$bin")
  out=$(mktemp)
  # Criterion runs every test in its own process; -j2 uses both cores.
  "$bin" -j2 --short-filename 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  line=$(grep -a 'Synthesis:' "$out" | tail -1)
  passed=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
  failed=$(sed -n 's/.*Failing: \([0-9]*\).*/\1/p' <<<"$line")
  crashed=$(sed -n 's/.*Crashing: \([0-9]*\).*/\1/p' <<<"$line")
  passed=${passed:-0}; failed=$(( ${failed:-0} + ${crashed:-0} ))
  # Criterion counts a test that passed its assertions but leaked (or hit
  # a sanitizer report) as passing; the report is in the output and the
  # exit status. Count each report as a failure.
  reports=$(grep -acE 'ERROR: (Leak|Address|Thread)Sanitizer|runtime error:' "$out")
  if [ "$reports" -gt 0 ]; then
    failed=$((failed + reports)); passed=$((passed > reports ? passed - reports : 0))
  fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  echo "$label $name $passed $failed" >> "$results"
  [ "$rc" -eq 0 ] || status=1
  rm -f "$out"
done
exit $status
