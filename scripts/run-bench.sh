#!/usr/bin/env bash
# Runs every benchmark binary in turn: `make bench` calls
#   bash scripts/run-bench.sh build/bench/<name>...
# rt_bench runs all seven runtime workloads (shared/bench/runtime-workloads.md)
# at scale 1 and ends with its RESULT line; loadgen and rooms_bench, which
# need a server, run through scripts/bench-endpoint.sh and
# scripts/bench-rooms.sh; any other binary runs without arguments. Then, when Erlang is installed,
# bench/erlang/rt_bench.erl runs the same workloads on the BEAM so the two
# can be compared on this machine (docs/performance.md).
#
# Environment:
#   BENCH_REPS=N           runs per workload (default 3)
#   BENCH_SCALE=F          sizes multiplier (default 1; for a quick look only)
#   ROOST_BENCH_ERLANG=1   install Debian's erlang-base if erl is missing,
#                          then run the BEAM side
#   ROOST_BENCH_ERLANG=0   skip the BEAM side even if erl is installed
# Exits non-zero if any benchmark failed (a failed run, or the restart
# workload's state check). Timings are never checked: benchmarks are not
# tests.
set -u
cd "$(dirname "$0")/.."
reps=${BENCH_REPS:-3}
scale=${BENCH_SCALE:-1}
status=0

for bin in "$@"; do
  name=$(basename "$bin")
  echo "=== $name"
  case "$name" in
    rt_bench) "$bin" --scale "$scale" --reps "$reps" || status=1 ;;
    # Benchmarks that need a running server have a driver script that
    # starts build/roost for them (on 127.0.0.1) and stops it afterwards.
    loadgen)
      if [ -f scripts/bench-endpoint.sh ]; then
        LOADGEN_BIN="$bin" bash scripts/bench-endpoint.sh || status=1
      else
        echo "(no scripts/bench-endpoint.sh: $name skipped)"
      fi ;;
    rooms_bench)
      if [ -f scripts/bench-rooms.sh ]; then
        ROOMS_BENCH_BIN="$bin" bash scripts/bench-rooms.sh || status=1
      else
        echo "(no scripts/bench-rooms.sh: $name skipped)"
      fi ;;
    *) "$bin" || status=1 ;;
  esac
  echo
done

# The BEAM side of the runtime workloads.
want_erl=${ROOST_BENCH_ERLANG:-auto}
if [ "$want_erl" = 1 ] && ! command -v erl >/dev/null 2>&1; then
  echo "=== installing erlang-base (ROOST_BENCH_ERLANG=1)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends erlang-base \
    || echo "run-bench: could not install erlang-base" >&2
fi
if [ "$want_erl" != 0 ] && command -v erl >/dev/null 2>&1 && command -v erlc >/dev/null 2>&1; then
  echo "=== rt_bench.erl (BEAM, the same workloads)"
  mkdir -p build/bench/erlang
  if erlc -o build/bench/erlang bench/erlang/rt_bench.erl; then
    # +P: room for the 1,000,000 processes of `spawn` and the 300,000 of `trees`.
    erl -noshell +P 4000000 -pa build/bench/erlang -run rt_bench main \
        -extra --scale "$scale" --reps "$reps" || status=1
  else
    status=1
  fi
elif [ "$want_erl" != 0 ]; then
  echo "(erl not installed: BEAM side skipped; ROOST_BENCH_ERLANG=1 installs erlang-base)"
fi
exit $status
