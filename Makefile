# The two commands of the README:
#   make demo   - create .venv, install what is missing, train lift/max/avg/blur on Fashion-MNIST, write reports/demo/
#   make test   - the same set-up, then the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch/torchvision pinned here (pyproject declares ranges): these builds are the ones this platform provides.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test gate lint install data bench clean

demo: install data
	$(PY) cli.py demo $(DEMO_ARGS)

test: install data
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# make gate - the CI regression gate (run by .ci/run after the tests). Trains the four tiny `demo --profile ci`
#   ConvNets (lift/max/avg/blur) from scratch on 4000 Fashion-MNIST images - seeded, deterministic algorithms, one
#   thread, so the numbers do not depend on the runner's core count - evaluates them on 64 test images (cifar10-c,
#   cifar10-p, shift and reconstruction probes), then `check`s every headline number (clean accuracy, mCE, mean
#   corruption error, mFR, mFP, mT5D, consistencies, reconstruction PSNR) against the committed baseline with the
#   two-sided tolerances stored in it: exit 1 when the toolkit's numbers drift. After an intended change, refresh the
#   baseline from the gate's run with the same tolerances (see reports/baseline/update.sh) and commit it.
#   GATE_FRESH=--restart (the default) trains from scratch; .ci/run passes GATE_FRESH= after `make test` has trained
#   the same models into $(GATE_OUT) (tests/e2e/test_ci_gate.py, told so by RBL_GATE_OUT): the demo then resumes,
#   refusing a folder made with other settings, and trains and evaluates nothing again.
GATE_OUT      ?= reports/ci-gate
GATE_BASELINE ?= reports/baseline/baseline.json
GATE_FRESH    ?= --restart
gate: install data
	$(PY) cli.py demo --profile ci --out $(GATE_OUT) $(GATE_FRESH) --no-report --no-progress
	$(PY) cli.py check --baseline $(GATE_BASELINE) --junit $(GATE_OUT)/check.xml $(GATE_OUT)/run

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev,ray,adversarial,timm]"
	touch $(STAMP)

data:
	@bash scripts/ensure_data.sh

lint: install
	$(VENV)/bin/ruff check .

bench: install data
	$(PY) benchmarks/pooling.py
	$(PY) benchmarks/corruptions.py
	$(PY) benchmarks/evaluate.py
	$(PY) benchmarks/parity.py
	$(PY) benchmarks/scaling.py

clean:
	rm -rf $(VENV) build *.egg-info
