# Two commands do all set-up: `make study` and `make test`. Both create .venv on first use.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= quick
# The CPU build of torch; override on a GPU machine: make study TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0

.PHONY: study test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[study,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

study: $(STAMP)
	$(VENV)/bin/cpikan study run --profile $(PROFILE) --jobs 2
	$(VENV)/bin/cpikan study report --profile $(PROFILE)

test: $(STAMP)
	$(VENV)/bin/python -m pytest --nbval-lax tests notebooks

clean:
	rm -rf $(VENV) reports/smoke
