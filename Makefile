# runh: the two commands the README promises, and the pieces under them.
#   make run   installs everything on a fresh Debian machine and runs a demo container
#   make test  runs the whole test suite (.ci/run calls exactly this)
VENV    ?= .venv
PY      := $(VENV)/bin/python
# Debian's interpreter: it starts in 5.5 ms with -I -S here; pyenv's shim is a slow bash script.
SYSPY   ?= /usr/bin/python3.11
# rustup's toolchain is preinstalled under ~/.cargo; CI's environment may not have it on PATH.
export PATH := $(HOME)/.cargo/bin:/root/.cargo/bin:$(PATH)
# pytest arguments, e.g. make test PYTEST_ARGS='-m "not cgroupv2" -x'
PYTEST_ARGS ?=

# Debian packages: what `make run` needs, and what the tests and benchmarks add.
APT_RUN  := python3-venv python3-dev busybox-static gcc
# containerd: the CRI tests and `runh bench -s cri` run Debian's containerd 1.6 (CRI plugin);
# apparmor (apparmor_parser), selinux-policy-default and policycoreutils (load_policy): the
# AppArmor and SELinux checks in the guest (tests/lsm_checks.py); criu, podman and conmon:
# checkpoint/restore in the guest (tests/criu_checks.py); systemd and dbus (with containerd
# and podman): the systemd driver's checks in the guest, which has no network and sees this
# machine's / (tests/systemd_checks.py).
APT_TEST := $(APT_RUN) runc crun strace libseccomp2 libseccomp-dev iproute2 util-linux uidmap procps time \
            apparmor containerd selinux-policy-default policycoreutils criu podman conmon systemd dbus
# Python packages of the venv: runh's own, then the tests' (grpcio + grpcio-tools: the CRI
# client, stubs generated from python/runh/bench/cri/api.proto at run time; pytest-benchmark:
# benches/micro, `make bench-micro`).
PIP_DEPS := maturin click jsonschema pytest hypothesis matplotlib grpcio grpcio-tools pytest-benchmark

.PHONY: run test build install demo bench bench-micro apt-run apt-test

# Install only the missing packages, so a machine that has them needs no network (and
# no apt-get update); the lock timeout lets concurrent installs queue.
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get -o DPkg::Lock::Timeout=300 update -q && \
	  apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $$missing; \
	fi
endef

apt-run:
	$(call apt_install,$(APT_RUN))

apt-test:
	$(call apt_install,$(APT_TEST))

# ---- make run: fresh machine -> venv -> pip install . -> demo container
run: apt-run install demo

# `pip install .` builds the wheel through maturin (the PEP 517 backend); without build
# isolation it uses the venv's maturin instead of fetching another one.
install: $(VENV)/.deps
	$(VENV)/bin/pip install -q --no-build-isolation .

demo:
	RUNH=$(VENV)/bin/runh PY=$(PY) sh scripts/demo.sh

# ---- make test: everything the suite needs, a build, then the whole suite (cgroupv2 included)
test: apt-test build
	$(PY) -m pytest -ra $(PYTEST_ARGS)

bench: build
	$(PY) benches/run_vs_runc.py

# pytest-benchmark over the in-process hot path (benches/micro: config validation, state,
# cgroup planning, seccomp, argv parsing); the JSON and a text table go to
# benches/results/micro/. Whole-process comparisons are `runh bench`'s.
MICRO_OUT ?= benches/results/micro
bench-micro: build
	mkdir -p $(MICRO_OUT)
	$(PY) -m pytest -q -p no:cacheprovider benches/micro --benchmark-json=$(MICRO_OUT)/micro.json \
	  --benchmark-columns=min,median,mean,stddev,rounds --benchmark-sort=name | tee $(MICRO_OUT)/micro.txt
	@# Keep the statistics, drop every round's raw time (20 MB of the JSON, which is committed).
	$(PY) -c 'import json,sys; p=sys.argv[1]; d=json.load(open(p)); [b["stats"].pop("data", None) for b in d["benchmarks"]]; json.dump(d, open(p, "w"), indent=1)' $(MICRO_OUT)/micro.json

.PHONY: build
# maturin develop into the shared venv; flock so that parallel builds queue instead of clash.
# rust/build.rs installs python/runh/runh-init (git-ignored); cargo reruns it only when a
# source changes, so a removed copy (git clean -X) is rebuilt by touching the script.
build: $(VENV)/.deps
	@test -e python/runh/runh-init || touch rust/build.rs
	flock /tmp/runh-build.lock $(VENV)/bin/maturin develop --release -q

# The stamp names the package list, so that a venv made before a package was added gets it.
$(VENV)/.deps: $(VENV)/.deps-$(shell echo '$(PIP_DEPS)' | cksum | cut -d' ' -f1)
	touch $@
$(VENV)/.deps-%: | apt-run
	$(SYSPY) -m venv $(VENV)
	$(VENV)/bin/pip install -q $(PIP_DEPS)
	rm -f $(VENV)/.deps-*
	touch $@
