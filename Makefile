# FastAttention — the README's two commands are `make demo` and `make test`.

SWIFT        ?= swift
PACKAGES     := libopenblas-dev libpng-dev libjpeg-dev
OUT          ?= out
GRID         ?= 48
ATTEND       := .build/release/attend
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTHON       ?= python3
VENV         ?= $(HOME)/.venvs/fastattention

.PHONY: demo test deps build release fixtures bench clean fuzz fuzz-build fuzz-libs sanitize sanitize-replay

## demo: install what is missing, build in release, and draw every module's map on SampleImages/ into out/
demo: deps release
	@mkdir -p $(OUT)
	@for img in SampleImages/*.jpg SampleImages/*.png; do \
	  for id in $$($(ATTEND) list --ids); do \
	    $(ATTEND) map "$$img" --module $$id --grid $(GRID) --out $(OUT) || exit 1; \
	  done; \
	done
	@echo "maps written to $(OUT)/"

## test: install what is missing and run the whole test suite (no Python, no network)
test: deps
	$(SWIFT) test --disable-swift-testing

## deps: the three system libraries, through apt-get when missing
deps:
	@if ! dpkg -s $(PACKAGES) >/dev/null 2>&1; then \
	  echo "installing $(PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(PACKAGES); \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

## fixtures: regenerate the PyTorch parity fixtures (needs the Python tools, see Tools/README.md)
fixtures:
	@test -x $(VENV)/bin/python || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -r Tools/requirements.txt; }
	cd Tools/reference && for f in *.py; do [ "$$f" = common.py ] || $(VENV)/bin/python $$f || exit 1; done

## bench: Swift and PyTorch side by side, and the scaling plot, into docs/ (see Tools/bench/README.md)
bench: release
	@test -x $(VENV)/bin/python || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -r Tools/requirements.txt; }
	$(VENV)/bin/python Tools/bench/compare.py --attend $(ATTEND)
	$(VENV)/bin/python Tools/bench/scaling.py --attend $(ATTEND)

## fuzz-build: the four libFuzzer targets (fuzz-png, fuzz-jpeg, fuzz-safetensors, fuzz-npy) with ASan,
## in $(FUZZ_SCRATCH). Not `-sanitize=fuzzer`: that links libFuzzer's own main, which collides
## with the executable's (Fuzz/README.md); coverage flags + libclang_rt.fuzzer_no_main instead.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= png jpeg safetensors npy
FUZZ_SCRATCH ?= .build-fuzz
FUZZ_WORK    ?= .fuzz
FUZZ_FLAGS   ?= -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256
TOOLCHAIN    := $(shell dirname "$$(readlink -f "$$(command -v $(SWIFT))")")
FUZZER_LIB   := $(shell "$(TOOLCHAIN)/clang" -print-resource-dir)/lib/linux/libclang_rt.fuzzer_no_main-$(shell uname -m).a
# Instrumented libpng/libjpeg-turbo (Fuzz/instrumented-libs.sh, `make fuzz-libs`), used when built:
# without them the PNG/JPEG targets see only our shims' edges.
FUZZ_LIBS    ?= $(FUZZ_SCRATCH)/libs
FUZZ_LIBS_FLAGS = $(if $(wildcard $(FUZZ_LIBS)/lib/libpng.a),-Xcc -I$(abspath $(FUZZ_LIBS))/include -Xlinker -L$(abspath $(FUZZ_LIBS))/lib -Xlinker -lz)
FUZZ_BUILD    = $(SWIFT) build -c release --scratch-path $(FUZZ_SCRATCH) \
	-Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp \
	-Xswiftc -DFUZZING -Xcc -fsanitize=address,fuzzer-no-link -Xlinker $(FUZZER_LIB) -Xlinker -lstdc++ $(FUZZ_LIBS_FLAGS)

fuzz-build: deps
	@test -f "$(FUZZER_LIB)" || { echo "no libFuzzer in this toolchain ($(FUZZER_LIB))"; exit 1; }
	@echo "libpng/libjpeg: $(if $(FUZZ_LIBS_FLAGS),instrumented ($(FUZZ_LIBS)),system (not instrumented; see make fuzz-libs))"
	for t in $(FUZZ_TARGETS); do $(FUZZ_BUILD) --product fuzz-$$t || exit 1; done

## fuzz-libs: instrumented static libpng and libjpeg-turbo from source trees of the system's versions,
## e.g. `apt-get source libpng1.6 libjpeg-turbo` or git checkouts of v1.6.39 and 2.1.5
fuzz-libs:
	@test -n "$(LIBPNG_SRC)" -a -n "$(LIBJPEG_SRC)" || { echo "usage: make fuzz-libs LIBPNG_SRC=DIR LIBJPEG_SRC=DIR"; exit 1; }
	Fuzz/instrumented-libs.sh "$(LIBPNG_SRC)" "$(LIBJPEG_SRC)" "$(FUZZ_LIBS)"
	rm -f $(FUZZ_SCRATCH)/release/fuzz-png $(FUZZ_SCRATCH)/release/fuzz-jpeg

## fuzz: each target for FUZZ_SECONDS (default 60), one after another, from the seeds in
## Tests/Fuzz/corpus/<target>; new inputs go to $(FUZZ_WORK)/corpus/<target>, crashes to
## $(FUZZ_WORK)/artifacts/<target>/ (replay one with `swift run fuzz-<target> FILE`).
fuzz: fuzz-build
	@bin=$$($(FUZZ_BUILD) --show-bin-path); \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_WORK)/corpus/$$t $(FUZZ_WORK)/artifacts/$$t; \
	  echo "== fuzz-$$t for $(FUZZ_SECONDS) s"; \
	  "$$bin/fuzz-$$t" -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(FUZZ_FLAGS) \
	    -dict=Tests/Fuzz/dict/$$t.dict -artifact_prefix=$(FUZZ_WORK)/artifacts/$$t/ \
	    $(FUZZ_WORK)/corpus/$$t Tests/Fuzz/corpus/$$t || exit 1; \
	done

## sanitize: the whole test suite under AddressSanitizer (+LeakSanitizer), then UndefinedBehaviorSanitizer,
## each in its own scratch path. swiftc has no -sanitize=undefined on Linux (Swift code traps on
## overflow and out-of-bounds by itself), so UBSan instruments the C targets (CCodecs, CKernels,
## CFuzzerDriver), non-recoverable, and the clang linker adds its runtime. Two full instrumented
## builds plus two suite runs (~15 min on a quiet 2-core machine): CI runs sanitize-replay instead.
UBSAN_FLAGS := -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined -Xswiftc -Xclang-linker -Xswiftc -fsanitize=undefined
sanitize: deps
	LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/Sanitizers/lsan.supp \
	  $(SWIFT) test --sanitize=address --scratch-path .build-asan
	UBSAN_OPTIONS=print_stacktrace=1 $(SWIFT) test --scratch-path .build-ubsan $(UBSAN_FLAGS)

## sanitize-replay: the four parsers' fuzz targets built with ASan+UBSan, replaying every seed and
## fuzzer-found regression (Tests/Fuzz/). Small builds (no FastAttention, no ArgumentParser): CI-sized.
REPLAY_BUILD = $(SWIFT) build --scratch-path .build-sanitize-replay --sanitize=address $(UBSAN_FLAGS)
sanitize-replay: deps
	for t in $(FUZZ_TARGETS); do $(REPLAY_BUILD) --product fuzz-$$t || exit 1; done
	@bin=$$($(REPLAY_BUILD) --show-bin-path); \
	for t in $(FUZZ_TARGETS); do \
	  UBSAN_OPTIONS=print_stacktrace=1 "$$bin/fuzz-$$t" Tests/Fuzz/corpus/$$t $$(ls -d Tests/Fuzz/regressions/$$t 2>/dev/null) || exit 1; \
	done

clean:
	rm -rf .build $(OUT)
