# MLaaS Portal: `make run` starts everything with demo data; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test test-fast venv lint bench image clean

run: $(STAMP)
	@bash scripts/run.sh

test: $(STAMP)
	@bash scripts/test.sh

test-fast: $(STAMP)
	@MLAAS_SKIP_BROWSER=1 bash scripts/test.sh -m "not browser and not slow"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --upgrade pip
	@$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/python bench/local_engine.py
	$(VENV)/bin/python bench/dispatch.py

# The step image: built and pushed with docker/podman, or registered on the emulator. `make image TAG=v3`.
image: $(STAMP)
	$(VENV)/bin/python manage.py image_publish $(if $(TAG),--tag $(TAG))

clean:
	rm -rf .local staticfiles .pytest_cache
