# qcow2-harness. Two commands on a fresh Debian 12 machine with Python 3.11,
# Node 20 and apt:  `make demo`  and  `make test`. Both bootstrap everything.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := qemu-utils time chromium chromium-driver
# What building the zoned series needs (qcow2harness/qemu_build.py).
BUILD_PACKAGES := dpkg-dev ninja-build pkg-config libglib2.0-dev flex bison libzstd-dev \
	zlib1g-dev python3-venv git xz-utils
# The zoned series under test: `make test` builds it (or takes it from the cache) and runs
# the zoned suites against it when this folder exists.
SERIES ?= ../shared/zoned-series

.PHONY: all setup system-deps node-deps venv demo test bench ksy lint type iotests fuzz crash properties-nightly dist oss-fuzz clean zoned-qemu zoned-build-deps mutation

all: test

setup: system-deps node-deps venv

# Debian packages: the real writer (qemu-img, qemu-io) comes from qemu-utils; chromium
# renders `report --png` and loads the report pages in tests.
system-deps:
	@if ! command -v qemu-img >/dev/null 2>&1 || ! command -v qemu-io >/dev/null 2>&1 \
			|| [ ! -x /usr/bin/time ] || [ ! -x /usr/bin/chromium ]; then \
		echo "setup: installing $(APT_PACKAGES) with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@command -v node >/dev/null 2>&1 || { echo "setup: Node.js 20 is required (apt-get install nodejs npm)"; exit 1; }

# The Kaitai compiler (npm build, driven by ksy/build.js).
node-deps: node_modules/.stamp
node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

venv: $(BIN)/.stamp
$(BIN)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,lint,fuzz]' tox
	@touch $@

demo: setup
	$(BIN)/qcow2-harness demo

test: setup
	@set -e; \
	if [ -z "$$QCOW2_HARNESS_ZONED_QEMU" ] && [ -d "$(SERIES)" ]; then \
		$(MAKE) -s zoned-build-deps; \
		QCOW2_HARNESS_ZONED_QEMU=$$($(BIN)/python -m qcow2harness.qemu_build \
			--series "$(SERIES)" --print-dir); \
		export QCOW2_HARNESS_ZONED_QEMU; \
		echo "test: the zoned suites run against $$QCOW2_HARNESS_ZONED_QEMU"; \
	elif [ -z "$$QCOW2_HARNESS_ZONED_QEMU" ]; then \
		echo "test: no $(SERIES): the zoned-series suites are not run (skipped with reason)"; \
	fi; \
	$(BIN)/tox -p auto -o -e py,ksy,lint,type,fuzz-smoke

# The writer under test: Debian's QEMU 10.2 source with the series in SERIES applied,
# built as zoned, zoned-asan and stock into ~/.cache/qcow2-harness (instant when cached).
# Then: export QCOW2_HARNESS_ZONED_QEMU=<the folder it prints>.
zoned-qemu: setup zoned-build-deps
	$(BIN)/python -m qcow2harness.qemu_build --series "$(SERIES)"

zoned-build-deps:
	@missing=$$(for p in $(BUILD_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "zoned-qemu: installing" $$missing "with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

bench: setup
	$(BIN)/python bench/run.py --out bench/results.md

ksy: node-deps
	node ksy/build.js

# ARGS go to the campaign, e.g. make crash ARGS="--shard 1/4 --json crash-1.json"
fuzz: setup
	$(BIN)/tox -e fuzz $(if $(ARGS),-- $(ARGS))

# Fails when a campaign could not run (exit 1); exit 2 is the campaigns' findings, which
# tox.ini's crash env prints as such and lets through.
crash: setup
	$(BIN)/tox -e crash $(if $(ARGS),-- $(ARGS))

properties-nightly: setup
	$(BIN)/tox -e properties-nightly $(if $(ARGS),-- $(ARGS))

# Mutation testing of the checker, the reference model and the crash oracle
# (qcow2harness/mutation.py, README "Mutation testing"); not part of `make test`.
# ARGS replace the defaults, e.g. make mutation ARGS="reference/zones.py --shard 1/4 --json m1.json"
mutation: setup
	$(BIN)/tox -e mutation $(if $(ARGS),-- $(ARGS))

iotests: setup
	$(BIN)/tox -e iotests

lint: setup
	$(BIN)/tox -e lint

type: setup
	$(BIN)/tox -e type

# sdist and wheel into dist/ (no Node needed: the generated parser is committed).
# The ClusterFuzzLite/OSS-Fuzz build.sh, rehearsed without Docker; each fuzzer then runs.
oss-fuzz: setup
	$(BIN)/python -m qcow2harness.fuzz.oss_fuzz_local $(ARGS)

dist: venv
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf .tox build dist *.egg-info data
