# Entry points for operators and CI. Everything a test needs is installed by these targets,
# so a fresh Debian 12 machine (root, Python 3.11) needs nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin

.PHONY: all venv devtools sysdeps demo dist test test-python test-collection test-molecule lint bench fuzz ui-screenshots clean

all: test

$(BIN)/python:
	scripts/ensure-python-venv.sh "$(PYTHON)" "$(VENV)"

venv: $(BIN)/python
	scripts/install-python-deps.sh "$(VENV)" core

devtools: $(BIN)/python
	scripts/install-python-deps.sh "$(VENV)" dev

sysdeps:
	scripts/install-system-deps.sh

demo: venv
	scripts/demo.sh

lint: venv
	$(BIN)/ruff check ruroco tests bench
	$(BIN)/ruff format --check ruroco tests bench
	$(BIN)/mypy ruroco

# dist/ruroco-VERSION-py3-none-any.whl and dist/ruroco-ruroco-VERSION.tar.gz, the collection that
# carries that wheel (what its roles install by default, and the controller's package)
dist: devtools
	scripts/build-dist.sh dist

# devtools: tests/e2e/test_e2e_default_flood.py and the bench's flood_default stages render
# the ruroco_server role's templates with ansible-playbook.
test-python: devtools sysdeps
	$(BIN)/python -m pytest -q tests bench

test-collection: devtools
	scripts/test-collection.sh

test-molecule: devtools sysdeps
	scripts/test-molecule.sh

test: lint test-python test-collection test-molecule

bench: devtools sysdeps
	bench/run.sh

# "Keep it closed": 1,000,000 fuzz datagrams (bench/fuzz.py), then 40 x kill -9 of the server
# under knocks and a replay of every packet (bench/crash.py); both run even if one fails.
# A private network namespace when possible (root); hard limit 20 minutes. Figures go to
# stdout, bench/out/{fuzz,crash}.json and the fuzz section of bench/RESULTS.md (rewritten in
# place by bench.report --fuzz-section). CI runs both smaller: tests/e2e/test_e2e_{fuzz,crash}.py
FUZZ_RUN = "$$0" -m bench.fuzz; status=$$?; "$$0" -m bench.crash && exit $$status
fuzz: venv
	@mkdir -p bench/out
	@if [ "$$(id -u)" = 0 ] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then \
		timeout --kill-after=20 1200 unshare -n -- \
			bash -c 'ip link set lo up || exit 1; $(FUZZ_RUN)' "$(BIN)/python"; \
	else \
		echo "fuzz: no private network namespace available, using the current one" >&2; \
		timeout --kill-after=20 1200 bash -c '$(FUZZ_RUN)' "$(BIN)/python"; \
	fi; status=$$?; \
	"$(BIN)/python" -m bench.report --fuzz-section || status=1; \
	exit $$status

# docs/img/ui-{execute,create,dashboard}.svg, the screenshots docs/ui.md and the README show;
# run after changing the UI and commit them (tests write theirs to a temporary directory)
ui-screenshots: venv
	$(BIN)/python scripts/ui-screenshots.py docs/img

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
