# FastAttention — the README's two commands are `make demo` and `make test`.

SWIFT        ?= swift
PACKAGES     := libopenblas-dev libpng-dev libjpeg-dev
OUT          ?= out
GRID         ?= 48
ATTEND       := .build/release/attend
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTHON       ?= python3
VENV         ?= $(HOME)/.venvs/fastattention

.PHONY: demo test deps build release fixtures bench clean

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

clean:
	rm -rf .build $(OUT)
