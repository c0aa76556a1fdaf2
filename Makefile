# Registry Lab — two commands on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := registry-lab
# One BLAS thread per process: on 2 cores, threaded BLAS in parallel test workers and
# notebook kernels oversubscribes the CPU (logistic fits ran ~40x slower).
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1

.PHONY: setup reproduce test lab clean lock docs help

help:
	@echo "make reproduce  - set up .venv from the lock and run the whole pipeline"
	@echo "make test       - set up .venv from the lock, then ruff, lint-imports, doctests and pytest"
	@echo "make docs       - build the API reference and guide into docs/site/ (offline)"
	@echo "make lab        - register the '$(KERNEL)' Jupyter kernel and start JupyterLab"
	@echo "make clean      - remove generated cohorts and reports"
	@echo "make lock       - re-resolve requirements.lock and environment.yml (needs network)"

setup: $(STAMP)

# Re-install only when the lock or the project metadata changed (idempotent set-up).
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Registry Lab (.venv)" >/dev/null
	@touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/registry-lab reproduce

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest --doctest-modules src/registry_lib -q
	$(BIN)/python -m pytest -n 2 --dist loadgroup

docs: $(STAMP)
	$(BIN)/python scripts/build_docs.py --out docs/site

lab: $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Registry Lab (.venv)" >/dev/null
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root,)

clean:
	rm -rf reports/* synthetic/*/ .pytest_cache
	@git checkout -- reports 2>/dev/null || true

lock:
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml requirements-build.in --all-extras --generate-hashes --python-version 3.11 --universal -o requirements.lock
	$(BIN)/python scripts/write_environment_yml.py
