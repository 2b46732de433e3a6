# Shortcuts; the scripts are the source of truth (a fresh Debian may not have make).
.PHONY: up test bench lint bundle
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
# The signed air-gapped bundle in dist/ (key: KEY=path or $HEALTHOS_BUNDLE_SIGNING_KEY; see README "Deployment").
bundle:
	scripts/setup
	.venv/bin/python images/build.py $(if $(KEY),--key $(KEY))
