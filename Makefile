# moescope — build, test, demo, bench.
#
# Every .c file in engine/ db/ analysis/ is library code; tui/ holds the
# full-screen app and the generation session, cli/ the subcommands and the
# binary's main() (cli/main.c).  Each tests/test_*.c is one cmocka test
# binary linked against all library code; tests/e2e_*.sh are end-to-end
# scripts run after them.  New files are picked up by wildcard: adding a
# module never needs a Makefile edit.

CC      ?= cc
BUILD   ?= build
PKGS     = ncursesw sqlite3 openblas jansson

# Flags live here and only here.
OPT      ?= -O2
WARN      = -Wall -Wextra -Werror -Wno-error=unused-function
STD       = -std=c11 -D_DEFAULT_SOURCE -D_XOPEN_SOURCE=700
PKG_CFLAGS := $(shell pkg-config --cflags-only-I $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS   ?=
CFLAGS   += $(STD) $(OPT) -g $(WARN) -pthread -I. $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS    = $(PKG_LIBS) -lm -pthread $(EXTRA_LDFLAGS)

LIB_SRC   = $(wildcard engine/*.c db/*.c analysis/*.c)
TUI_SRC   = $(wildcard tui/*.c)
CLI_SRC   = $(filter-out cli/main.c,$(wildcard cli/*.c))
TEST_SRC  = $(wildcard tests/test_*.c)
BENCH_SRC = $(wildcard tests/bench_*.c)
HDRS      = $(wildcard engine/*.h db/*.h analysis/*.h tui/*.h cli/*.h tests/*.h)

LIB_OBJ   = $(LIB_SRC:%.c=$(BUILD)/%.o)
FRONT_OBJ = $(TUI_SRC:%.c=$(BUILD)/%.o) $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN  = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN = $(BENCH_SRC:tests/%.c=$(BUILD)/tests/%)
E2E       = $(wildcard tests/e2e_*.sh)

all: moescope

# The binary for users sits at the top of the checkout; sanitizer builds
# keep theirs inside their build folder.
ifeq ($(BUILD),build)
BIN = moescope
else
BIN = $(BUILD)/moescope
endif

ifneq ($(BIN),moescope)
moescope: $(BIN)
.PHONY: moescope
endif

$(BIN): $(BUILD)/cli/main.o $(FRONT_OBJ) $(LIB_OBJ)
	@$(if $(V),,echo "  LD    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# V=1 shows the full commands
Q = $(if $(V),,@)

$(BUILD)/%.o: %.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(FRONT_OBJ) $(LIB_OBJ) $(HDRS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(FRONT_OBJ) $(LIB_OBJ) $(LDLIBS) -lcmocka

# make test: every unit test binary, then the end-to-end scripts.  Each test
# runs from the top of the checkout so data paths are tests/data/...
test: $(TEST_BIN) $(BIN)
	@set -e; fail=0; pass=0; \
	for t in $(TEST_BIN); do \
	  echo "== $$t"; \
	  if $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$t"; fi; \
	done; \
	for s in $(E2E); do \
	  echo "== $$s"; \
	  if MOESCOPE=$(CURDIR)/$(BIN) bash $$s; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$s"; fi; \
	done; \
	echo "suites: $$pass passed, $$fail failed"; \
	test $$fail -eq 0

# AddressSanitizer + UBSan build of everything, then the same tests.
asan:
	$(MAKE) BUILD=build/asan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" test

bench: $(BENCH_BIN) $(BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done
	@if [ -f tests/bench.sh ]; then MOESCOPE=$(CURDIR)/$(BIN) bash tests/bench.sh; fi

demo: $(BIN)
	@bash samples/demo.sh

# libFuzzer harness for the GGUF parser (clang), seeded with the fixtures,
# the sample and (written by the harness at start-up) miniatures of them.
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 4194304
fuzz:
	@mkdir -p build/fuzz/corpus
	clang -std=c11 -D_DEFAULT_SOURCE -D_XOPEN_SOURCE=700 -g -O1 -I. $(PKG_CFLAGS) \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -o build/fuzz/fuzz_gguf tests/fuzz_gguf.c $(wildcard engine/*.c) -lm -pthread $(PKG_LIBS)
	cp tests/data/fixtures/*/*.gguf tests/data/tokenizer/*.gguf samples/*.gguf build/fuzz/corpus/ 2>/dev/null || true
	GGUF_FUZZ_SEED_DIR=build/fuzz/corpus build/fuzz/fuzz_gguf -max_total_time=$(FUZZ_SECONDS) \
	  -rss_limit_mb=4096 -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 build/fuzz/corpus

clean:
	rm -rf build moescope

.PHONY: all test asan bench demo fuzz clean
.SECONDARY:
