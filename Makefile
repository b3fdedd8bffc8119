# roost — build, test and benchmark entry points.
#
#   make          build build/roost, the unit tests and the benchmarks
#   make run      install what is missing, build, start the server
#   make test     install what is missing, build, run every test (plain,
#                 then ASan+UBSan+LSan, then TSan for the scheduler tests)
#   make bench    build with optimisation and run every benchmark
#
# Variants build into their own tree: build/ (plain), build/asan/,
# build/tsan/. Sources are found by wildcard, so a new file in src/<mod>/
# or tests/unit/test_*.c needs no Makefile change.

CC       ?= cc
NPROC    := $(shell nproc 2>/dev/null || echo 2)
BUILD    ?= build
SAN      ?=
PKGS     := libuv jansson sqlite3 libssl libcrypto
# http-parser and wslay ship no .pc file on Debian: link them directly.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lwslay

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter
OPT      ?= -O2
CFLAGS_BASE = -std=gnu11 $(OPT) -g -pthread -D_GNU_SOURCE $(WARN) -Isrc $(PKG_CFLAGS)
LDLIBS   := $(PKG_LIBS) -pthread -lm

ifeq ($(SAN),asan)
  # RT_NO_POOL: plain malloc/free for messages so ASan sees every
  # use-after-free and LSan every leak that a pool would hide.
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
              -fno-omit-frame-pointer -DRT_NO_POOL
endif
CRITERION := -lcriterion
ifeq ($(SAN),tsan)
  SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer -DRT_NO_POOL
  OPT := -O1
  # Criterion cannot start under TSan (Snaipe/Criterion#274): the TSan
  # build compiles the same tests against tests/tsan/criterion/criterion.h.
  TEST_INC := -Itests/tsan
  CRITERION :=
endif

CFLAGS  = $(CFLAGS_BASE) $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SANFLAGS)

LIB_SRC   := $(filter-out src/main.c,$(wildcard src/*/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC  := $(wildcard tests/unit/test_*.c)
TEST_BIN  := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIB       := $(BUILD)/libroost.a

# The scheduler, mailbox and stress tests also run under ThreadSanitizer.
TSAN_TESTS := $(notdir $(basename $(wildcard tests/unit/test_rt_sched*.c \
              tests/unit/test_rt_mailbox*.c tests/unit/test_rt_stress*.c)))

# Keep test and bench objects: they are not throw-away intermediates.
.SECONDARY:

.PHONY: all deps run test unit check-asan check-tsan check-media integration browser browser-janus bench clean fuzz

all: $(BUILD)/roost $(TEST_BIN) $(BENCH_BIN)

deps:
	@bash scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/roost: $(BUILD)/obj/src/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_INC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CRITERION) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

run: deps
	@$(MAKE) -j$(NPROC) --no-print-directory $(BUILD)/roost
	@# The demo page's phoenix client comes from npm (nothing vendored).
	@[ -f web/node_modules/phoenix/priv/static/phoenix.mjs ] || \
	    (cd web && npm ci --no-audit --no-fund)
	./$(BUILD)/roost serve $(ARGS)

# Unit tests, plain build.
unit: $(TEST_BIN)
	@bash scripts/run-tests.sh plain $(TEST_BIN)

check-asan:
	@$(MAKE) -j$(NPROC) --no-print-directory BUILD=build/asan SAN=asan \
	    $(addprefix build/asan/tests/,$(notdir $(TEST_BIN)))
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    bash scripts/run-tests.sh asan $(addprefix build/asan/tests/,$(notdir $(TEST_BIN)))

check-tsan:
ifneq ($(TSAN_TESTS),)
	@$(MAKE) -j$(NPROC) --no-print-directory BUILD=build/tsan SAN=tsan \
	    $(addprefix build/tsan/tests/,$(TSAN_TESTS))
	@TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0 \
	    bash scripts/run-tests.sh tsan $(addprefix build/tsan/tests/,$(TSAN_TESTS))
endif

integration: $(BUILD)/roost
	@bash scripts/run-integration.sh

# The media client against a real Janus, which tests/media/run.sh starts in
# a private network namespace (root and unshare; exit 77 = skipped), plain
# and under ASan+UBSan (check-asan runs it too, but there it has no Janus
# and skips).
# Then the RoomServer's side of Janus with the phoenix client (tests/media/*.test.mjs).
check-media: $(BUILD)/tests/test_media_janus $(BUILD)/roost
	@bash tests/media/run.sh bash scripts/run-tests.sh media $(BUILD)/tests/test_media_janus; \
	    rc=$$?; [ $$rc -eq 77 ] && echo "check-media: skipped (needs root, unshare and janus)" || exit $$rc
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=asan build/asan/tests/test_media_janus
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    bash tests/media/run.sh bash scripts/run-tests.sh media-asan build/asan/tests/test_media_janus; \
	    rc=$$?; [ $$rc -eq 77 ] && echo "check-media: skipped (needs root, unshare and janus)" || exit $$rc
	@[ -d tests/integration/node_modules/phoenix ] || (cd tests/integration && npm ci --no-audit --no-fund)
	@bash tests/media/run.sh bash scripts/run-node-tests.sh media-rooms tests/media/*.test.mjs; \
	    rc=$$?; [ $$rc -eq 77 ] && echo "check-media: skipped (needs root, unshare and janus)" || exit $$rc

# Headless Chromium end-to-end tests of the demo page (tests/browser).
browser: $(BUILD)/roost
	@bash scripts/run-browser.sh

# The same call through a real Janus (--media janus), inside the private
# network namespace of tests/media/run.sh; Janus is killed mid-call.
browser-janus: $(BUILD)/roost
	@bash scripts/run-browser-janus.sh; \
	    rc=$$?; [ $$rc -eq 77 ] && echo "browser-janus: skipped (needs root, unshare and janus)" || exit $$rc

# Everything, in one command, from a fresh Debian machine.
test: deps
	@$(MAKE) -j$(NPROC) --no-print-directory all
	@rm -f build/test-results.txt
	-@$(MAKE) --no-print-directory unit
	-@$(MAKE) --no-print-directory check-asan
	-@$(MAKE) --no-print-directory check-tsan
	-@$(MAKE) --no-print-directory check-media
	-@$(MAKE) --no-print-directory integration
	-@bash scripts/run-browser.sh
	-@$(MAKE) --no-print-directory browser-janus
	@bash scripts/test-summary.sh build/test-results.txt

bench: deps
	@$(MAKE) --no-print-directory $(BENCH_BIN) $(BUILD)/roost
	@bash scripts/run-bench.sh $(BENCH_BIN)

fuzz: deps
	@bash scripts/run-fuzz.sh

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
