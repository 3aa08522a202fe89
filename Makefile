# The two commands of the README: `make run` and `make test`. Everything else is for developers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := var/demo/Maildir

#: Resolves constraints.txt (`make lock`); a single binary from PyPI, installed into the venv.
UV_VERSION := 0.13.8

.PHONY: run test unit integration e2e bench chaos fuzz lint lock system-deps clean

# Every package, the lint gates' ruff and mypy included, at the version in constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Mailroom into $(VENV) (log: $(VENV)/install.log)"
	@( $(BIN)/python -m pip install --upgrade pip \
		&& $(BIN)/python -m pip install -c constraints.txt -e '.[test,bench]' ) \
		> $(VENV)/install.log 2>&1 || { tail -30 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

## lock: pin every dependency of pyproject.toml (its extras included) in constraints.txt;
## pins already there are kept unless LOCK_ARGS=--upgrade
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --all-extras --python $(BIN)/python \
		--custom-compile-command 'make lock' $(LOCK_ARGS) -o constraints.txt

system-deps:
	@scripts/install-system-deps.sh

## run: the pipeline once over the demo Maildir on the embedded broker and SQLite, with the
## data folder in this checkout's var/ (unless MAILROOM_VAR_DIR says otherwise)
run: export MAILROOM_VAR_DIR ?= $(CURDIR)/var
run: $(STAMP)
	@scripts/install-system-deps.sh libmagic1
	@mkdir -p -m 700 var && mkdir -p $(dir $(DEMO)) && [ -d $(DEMO) ] || cp -r demo/Maildir $(DEMO)
	@$(BIN)/mailroom config apply demo/settings.yaml
	@$(BIN)/mailroom run --once

## test: the lint gates, then every test tier against real RabbitMQ and PostgreSQL on loopback
test: $(STAMP) system-deps lint
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadgroup

## unit: the fast loop, no servers
unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

## chaos: 3,000 mails through the scaled pipeline while workers, RabbitMQ and PostgreSQL are
## killed and restarted; fails unless no mail is lost, doubled or falsely dead-lettered
chaos: $(STAMP) system-deps
	$(BIN)/python -m chaos

## fuzz: corpus mails mutated at random through the parser and the validator for FUZZ_SECONDS;
## a mail that crashes them or takes over a second is saved in tests/fuzz/crashes/.
## FUZZ_SEED=<number> repeats a run (each run prints its seed)
FUZZ_SECONDS ?= 600
FUZZ_SEED ?= random
fuzz: $(STAMP)
	@scripts/install-system-deps.sh libmagic1
	MAILROOM_FUZZ_SECONDS=$(FUZZ_SECONDS) MAILROOM_FUZZ_SEED=$(FUZZ_SEED) MAILROOM_FUZZ_SHRINK=1 \
		$(BIN)/pytest -q -s -p no:cacheprovider tests/fuzz

lint: $(STAMP)
	$(BIN)/ruff check contracts services tests demo bench chaos
	$(BIN)/ruff format --check contracts services tests demo bench chaos
	$(BIN)/mypy contracts services

clean:
	rm -rf var
