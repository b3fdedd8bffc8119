#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang and runs each for a
# bounded time. Called by `make fuzz`; safe to run by hand.
#
#   FUZZ_SECONDS=60     time per target (default 60)
#   FUZZ_TARGETS="http ws"   subset to run (default: all)
#
# Each target is compiled directly from the few sources it needs (no
# libroost.a: the fuzzers want their own instrumentation). The kept seed
# corpus fuzz/corpus/<name>/ is only read; new inputs go to the scratch
# directory fuzz/corpus-new/<name>/ (git-ignored), crashes to
# build/fuzz/artifacts/. Exits non-zero if any target failed.
set -uo pipefail
cd "$(dirname "$0")/.."

CC=${FUZZ_CC:-clang}
SECS=${FUZZ_SECONDS:-60}
OUT=build/fuzz
SCRATCH=fuzz/corpus-new
ALL="http ws phx jwt rjson"
TARGETS=${FUZZ_TARGETS:-$ALL}

if ! command -v "$CC" >/dev/null 2>&1; then
  echo "run-fuzz: $CC not found (apt-get install clang libclang-rt-dev)" >&2
  exit 1
fi

# http-parser and wslay ship no .pc file on Debian: link them directly.
PKG_CFLAGS=$(pkg-config --cflags jansson libcrypto)
PKG_LIBS="$(pkg-config --libs jansson libcrypto) -lhttp_parser"
CFLAGS=(-std=gnu11 -g -O1 -D_GNU_SOURCE -Isrc
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -fno-omit-frame-pointer)

sources() {
  case "$1" in
    http) echo "fuzz/fuzz_http.c src/net/http.c src/net/ws.c" ;;
    ws)   echo "fuzz/fuzz_ws.c src/net/ws.c src/net/http.c" ;;
    phx)  echo "fuzz/fuzz_phx.c src/web/phx.c src/domain/rjson_read.c src/net/ws.c src/net/http.c" ;;
    jwt)  echo "fuzz/fuzz_jwt.c src/web/jwt.c" ;;
    rjson) echo "fuzz/fuzz_rjson.c src/domain/rjson.c src/domain/rjson_read.c" ;;
    *)    return 1 ;;
  esac
}

mkdir -p "$OUT/artifacts"
status=0
summary=()
for t in $TARGETS; do
  src=$(sources "$t") || { echo "run-fuzz: unknown target $t" >&2; status=1; continue; }
  bin="$OUT/fuzz_$t"
  echo "== build $bin"
  # shellcheck disable=SC2086
  if ! "$CC" "${CFLAGS[@]}" $PKG_CFLAGS $src -o "$bin" $PKG_LIBS; then
    summary+=("$t: BUILD FAILED"); status=1; continue
  fi
  mkdir -p "$SCRATCH/$t"
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
  echo "== run $bin for ${SECS}s"
  log="$OUT/fuzz_$t.log"
  # The first corpus directory receives new inputs; the kept one is read.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 "${dict[@]}" \
      -artifact_prefix="$OUT/artifacts/$t-" \
      "$SCRATCH/$t" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    summary+=("$t: ok, ${runs:-?} runs, ${cov:-cov: ?}")
  else
    summary+=("$t: FAILED (exit $rc), see $log and $OUT/artifacts/")
    tail -40 "$log"
    status=1
  fi
done

echo "== fuzz summary (${SECS}s per target)"
printf '  %s\n' "${summary[@]}"
exit $status
