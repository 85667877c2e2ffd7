# dicom-sensor: everything a fresh machine needs, behind two commands.
#   make demo   set up, then read the bundled captures with the default config
#   make test   set up, then lint, type-check and run the test suite

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
APT_PACKAGES := tshark dcmtk tcpdump tcpreplay prometheus prometheus-alertmanager iproute2 libcap2-bin bro-aux
OUT    ?= out

.PHONY: all setup system-deps demo test lint typecheck unit pcaps bench bench-micro fuzz clean

all: test

# System packages through apt, only those whose commands are missing.
system-deps:
	@missing=""; \
	for c in tshark:tshark storescp:dcmtk tcpdump:tcpdump tcpreplay:tcpreplay promtool:prometheus amtool:prometheus-alertmanager ip:iproute2 setcap:libcap2-bin bro-cut:bro-aux gcc:gcc; do \
	  cmd=$${c%%:*}; pkg=$${c##*:}; command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	$(PYTHON) -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# pip builds the compiled second-pass loop (sensor/capture/fastpath.c) with gcc.
$(STAMP): pyproject.toml sensor/capture/fastpath.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: system-deps $(STAMP)

demo: setup
	@mkdir -p $(OUT)
	$(BIN)/dicom-sensor demo --out $(OUT)

lint: setup
	$(BIN)/ruff check sensor dissectors tests bench
	$(BIN)/ruff format --check sensor dissectors tests bench

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q

test: lint typecheck unit

# Regenerate the real-peer captures under pcaps/ (needs root for network namespaces).
pcaps: setup
	PATH=$(CURDIR)/$(BIN):$$PATH bash pcaps/generate.sh
	PATH=$(CURDIR)/$(BIN):$$PATH bash pcaps/zones/generate.sh
	PATH=$(CURDIR)/$(BIN):$$PATH bash pcaps/hl7-mllp/generate.sh
	PATH=$(CURDIR)/$(BIN):$$PATH bash pcaps/phi-canary/generate.sh

bench-micro: setup
	$(BIN)/python bench/micro.py

# Generate the benchmark captures (if missing) and compare the sensor with dpkt and tshark.
bench: setup
	test -f bench/data/bench.pcap || $(BIN)/python bench/generate.py
	$(BIN)/python bench/run.py

# The long fuzzing run (the short one is part of make test).
fuzz: setup
	$(BIN)/python bench/fuzz.py --seconds 600

clean:
	rm -rf $(VENV) $(OUT) .mypy_cache .ruff_cache .pytest_cache .hypothesis
