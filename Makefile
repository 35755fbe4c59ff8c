# The two commands (run as root on a fresh Debian 12 machine):
#   make run    install everything, start the lab Asterisk, run the appliance
#   make test   install everything, run the whole test suite against real peers
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT   := age debootstrap espeak-ng ffmpeg chromium sqlite3 postgresql ca-certificates systemd
PYTEST_ARGS ?=

.PHONY: run test setup lab-root lab-down bench clean

run: setup lab-root
	$(VENV)/bin/callvault lab up
	exec $(VENV)/bin/callvault serve -c var/dev/callvault.toml

test: setup lab-root
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup lab-root
	$(PY) -m bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	@missing=""; for p in $(APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Builds the cached Debian sid root with Asterisk 22 and Ceph RGW (once).
lab-root: setup
	$(PY) -m appliance.lab.rootfs

lab-down:
	$(VENV)/bin/callvault lab down

clean:
	rm -rf $(VENV) var build *.egg-info
