# The two commands of the README: `make demo` and `make test`.  Each creates the
# environment first when it is missing (or older than pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch that this machine kind keeps on disk; an unpinned "torch"
# would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test env clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,export,quantize,ray]"
	touch $(STAMP)

# The main job: train MobileNet V2 (32x32 stem) on the embedded digits and report its test
# accuracy with vertebra train's defaults (5 epochs, about 29 s on 2 cores); each run gets a new output folder.
DEMO_OUT := runs/demo-$(shell date +%Y%m%d-%H%M%S)

demo: $(STAMP)
	$(BIN)/vertebra train mobilenet_v2_100 --data digits --out $(DEMO_OUT)

# Two pytest workers, one per core; each runs torch single-threaded (tests/conftest.py).  The NAS
# search tests share one reference search, so they stay together on one worker (loadgroup).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
