# Two commands do all set-up: `make study` and `make test` (`make test-fast` while editing).
# All create .venv on first use.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= quick
# The CPU build of torch; override on a GPU machine: make study TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0

.PHONY: study test test-fast setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[study,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The full profile also runs the reproductions (the quick one keeps its budget for the ablations).
study: $(STAMP)
	$(VENV)/bin/cpikan study run --profile $(PROFILE) --jobs 2
	if [ "$(PROFILE)" = full ]; then $(VENV)/bin/cpikan study reproduce --profile full --jobs 2; fi
	$(VENV)/bin/cpikan study report --profile $(PROFILE)

test: $(STAMP)
	$(VENV)/bin/python -m pytest --durations=15 --nbval-lax tests notebooks

# While editing: no notebooks, no test marked slow (under a minute on two cores).
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest --durations=15 -m "not slow" tests

clean:
	rm -rf $(VENV) reports/smoke
