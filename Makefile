# Thin wrappers; dev.py does the work. Pass extra args with ARGS="...", e.g. make test ARGS="-k engine".
PY ?= python3

.PHONY: demo test lint bench openapi up venv

demo:
	$(PY) dev.py demo $(ARGS)

test:
	$(PY) dev.py test $(ARGS)

lint:
	$(PY) dev.py lint

bench: venv
	.venv/bin/python bench/engine.py $(ARGS)

openapi: venv
	.venv/bin/preflight openapi $(ARGS)

up:
	docker compose up --build

# create/refresh .venv (a no-op while pyproject.toml is unchanged)
venv:
	@$(PY) -c "import dev; dev.ensure_venv()"
