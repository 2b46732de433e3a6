# Shortcuts; the scripts are the source of truth (a fresh Debian may not have make).
.PHONY: up test bench lint
up:
	scripts/up
test:
	scripts/test
lint:
	.venv/bin/ruff check .
	.venv/bin/lint-imports
bench:
	scripts/setup --test
	.venv/bin/python -m bench
