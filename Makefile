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

.PHONY: demo test lint install data bench clean

demo: install data
	$(PY) cli.py demo $(DEMO_ARGS)

test: install data
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

data:
	@bash scripts/ensure_data.sh

lint: install
	$(VENV)/bin/ruff check .

bench: install data
	$(PY) benchmarks/pooling.py
	$(PY) benchmarks/corruptions.py
	$(PY) benchmarks/evaluate.py

clean:
	rm -rf $(VENV) build *.egg-info
