# podroute — the two commands a user needs are `make demo` and `make test`.
# Both need Linux, root (network namespaces) and, the first time, network access to Debian's
# packages and the Go module proxy (the control plane is built from source and cached).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:/usr/local/go/bin:$(PATH)
export DEBIAN_FRONTEND := noninteractive

CARGO ?= cargo
LAB ?= demo
# make demo: cluster (kubelet + containerd per node, podroute as its DaemonSet; the default) or
# light (agents started by hand, pods made with cnitool; builds less the first time).
DEMO_MODE ?= cluster
# Debian packages the lab and the tests use: routers to peer with, iproute2, the reference CNI
# plugins (chain partners and benchmark baseline), Prometheus (promtool, and a server scraping the
# lab's agents), small tools the tests call, and the cluster mode's container runtime (runc),
# image builder (buildah) and test-pod shell (busybox-static).
APT_PACKAGES := bird2 gobgpd frr iproute2 iputils-ping containernetworking-plugins tcpdump jq \
	openssl procps psmisc kmod ca-certificates curl iptables nftables prometheus \
	runc buildah busybox-static ipset
FUZZ_SECONDS ?= 10
# Test output is kept here as well as printed, for the closing summary line.
TEST_LOGS := target/test-logs

.PHONY: help deps root control-plane lab-images build lint unit-test root-test fuzz-smoke bench-smoke test bench soak fuzz demo lab-down clean

help:
	@echo "make demo      a 3-node cluster (kubelet + containerd per node) with a BIRD router, podroute"
	@echo "               as its DaemonSet, pods made by the kubelets through the CNI plugin (root)"
	@echo "               DEMO_MODE=light: agents started by hand, pods made with cnitool"
	@echo "make lab-down  tear the demo lab down"
	@echo "make test      install what is needed and run every test tier (root)"
	@echo "make bench     BGP ingest benchmark: podroute vs BIRD 2 and GoBGP (root, long; see BENCHMARKS.md)"
	@echo "make soak      10-minute API-server outage with an agent restart, 10-ms probes (root)"
	@echo "make fuzz      the fuzzing campaign (FUZZ_CAMPAIGN_SECONDS per target; see fuzz/README.md)"

root:
	@if [ "$$(id -u)" != 0 ]; then echo "error: this needs root (network namespaces); run it as root, e.g. with sudo" >&2; exit 1; fi

# Installs missing Debian packages only; a machine that has them all makes no apt call.
deps: root
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	else echo "deps: all Debian packages present"; fi
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust (stable) with rustup" >&2; exit 1; }
	@command -v go >/dev/null || { echo "error: Go not found; it builds the lab's kube-apiserver and etcd: apt-get install golang-go (>= 1.24) or install from go.dev" >&2; exit 1; }

# The light lab's kube-apiserver, kubectl, etcd and cnitool, and the cluster mode's
# kube-controller-manager, kube-scheduler, kubelet and containerd, cached per version set.
control-plane:
	@tests/scripts/control-plane.sh >/dev/null
	@tests/scripts/control-plane.sh cluster >/dev/null

# The cluster mode's images (podroute from static release binaries, pause, busybox), built
# with buildah without a registry into target/lab-images/; the lab calls this too, and it
# rebuilds nothing that is up to date.
lab-images: root
	@tests/scripts/lab-images.sh target/lab-images >/dev/null

build:
	$(CARGO) build --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Tier 1: pure unit tests, no root.
unit-test:
	@mkdir -p $(TEST_LOGS)
	set -o pipefail; $(CARGO) test --workspace 2>&1 | tee $(TEST_LOGS)/unit.log

# Tiers 2 and 3: kernel tests in private namespaces and the lab's end-to-end tests (root).
# The cluster-mode tests use the images `lab-images` built (PODROUTE_LAB_IMAGES).
root-test: root lab-images
	@mkdir -p $(TEST_LOGS)
	@ip netns list | awk '{print $$1}' | sort > $(TEST_LOGS)/netns-before
	@ls /var/lib/cni/results 2>/dev/null | sort > $(TEST_LOGS)/cni-results-before
	set -o pipefail; PODROUTE_LAB_IMAGES=$(CURDIR)/target/lab-images $(CARGO) test --workspace --exclude podroute-bench -- --ignored --test-threads=2 2>&1 | tee $(TEST_LOGS)/root.log
	@leaked=$$(ip netns list | awk '{print $$1}' | sort | comm -13 $(TEST_LOGS)/netns-before -); \
	if [ -n "$$leaked" ]; then echo "error: tests leaked network namespaces:" $$leaked >&2; exit 1; fi
	@leaked=$$(ls /var/lib/cni/results 2>/dev/null | sort | comm -13 $(TEST_LOGS)/cni-results-before -); \
	if [ -n "$$leaked" ]; then echo "error: tests left libcni results on the host:" $$leaked >&2; exit 1; fi

fuzz-smoke:
	@if [ -x fuzz/run.sh ]; then fuzz/run.sh $(FUZZ_SECONDS); else echo "fuzz: no targets yet"; fi

# The benchmark harness on 1,000 prefixes into each receiver (debug agent, about 15 s), and the
# convergence benchmark on 3 nodes (podroute mesh and reflectors, kube-router; a few minutes at
# most): proves `make bench` still works; it measures nothing worth reading. Not part of root-test, so it
# runs once, after it.
bench-smoke: root
	@mkdir -p $(TEST_LOGS)
	$(CARGO) build -p podroute-agent -p podroute-cni
	@ip netns list | awk '{print $$1}' | sort > $(TEST_LOGS)/netns-before-bench
	set -o pipefail; $(CARGO) test -p podroute-bench --test smoke -- --ignored 2>&1 | tee $(TEST_LOGS)/bench-smoke.log
	@leaked=$$(ip netns list | awk '$$1 ~ /^bsmoke/ {print $$1}' | sort | comm -13 $(TEST_LOGS)/netns-before-bench -); \
	if [ -n "$$leaked" ]; then echo "error: the bench smoke leaked network namespaces:" $$leaked >&2; exit 1; fi

test: deps control-plane lint build lab-images unit-test root-test fuzz-smoke bench-smoke
	@echo "make test: all tiers passed"
	@tests/scripts/test-summary.sh $(TEST_LOGS)/unit.log $(TEST_LOGS)/root.log $(TEST_LOGS)/bench-smoke.log

# The BGP ingest benchmark of issue 9 (BENCHMARKS.md): podroute-agent (release build) against
# BIRD 2 and GoBGP in a lab, alternating, medians of BENCH_RUNS runs. Hours with the defaults;
# CI does not run it. Results: target/bench/results.json (machine-readable) and results.md
# (the tables). Environment (see `podroute-bench run --help`): BENCH_SCENARIOS, BENCH_RECEIVERS,
# BENCH_RUNS (5), BENCH_IDLE_SECS (300), BENCH_IDLE_SCENARIOS (v4-100k,v4-1m),
# BENCH_TIMEOUT_SECS, BENCH_TIMEOUT_CAP_SECS (300), BENCH_OUTPUT, BENCH_PERF_SECS (perf record
# the agent during idle; installs linux-perf).
# Then the convergence benchmark of issue 15 (podroute against kube-router at 20/50/100 nodes,
# and podroute with two route reflectors at 100; kube-router is built from its pinned module
# by tests/scripts/kube-router.sh and cached): target/bench/convergence.{json,md} and
# convergence-<nodes>.svg. Environment (`podroute-bench convergence --help`): BENCH_CONV_SIZES
# (20,50,100), BENCH_CONV_CHANGES (100 of each kind), BENCH_CONV_KUBE_ROUTER_CHANGES,
# BENCH_CONV_REFLECTORS_AT (100), BENCH_CONV_TIMEOUT_SECS (300).
# Then the mesh bench (issue 15: one agent, 999 simulated peers; BENCH_MESH_PEERS,
# BENCH_MESH_STEADY_SECS) three times: as it is (target/bench/mesh.{json,md}), with BFD 300 ms × 3
# on every mesh session over the lab's UDP sockets (issue 12: target/bench/mesh-bfd.{json,md}),
# and with kube-router under test instead (target/bench/mesh-kube-router.{json,md}).
# Then the CNI churn bench (issue 15: podroute, ptp and bridge, 100 pods at once; BENCH_CNI_PODS,
# BENCH_CNI_ROUNDS) with the IPAM files on a fresh journaled ext4 (tests/scripts/
# journaled-scratch.sh; BENCH_CNI_DATA_DIR picks another place): target/bench/cni-churn.{json,md}.
# Then the BFD loss window (issue 12): a router → node link cut with BFD 300 ms × 3 and with
# the hold timer alone, 10-ms probes from behind a BIRD router: target/bench/bfd-loss.{json,md};
# BENCH_BFD_LOSS_RUNS (5 per mode), BENCH_BFD_LOSS_HOLD_SECS (9).
bench: deps control-plane
	@if [ -n "$(BENCH_PERF_SECS)" ] && ! dpkg -s linux-perf >/dev/null 2>&1; then \
		apt-get install -y -q --no-install-recommends linux-perf; fi
	$(CARGO) build --release -p podroute-agent -p podroute-bench
	tests/scripts/static-bins.sh >/dev/null
	target/release/podroute-bench run
	@mkdir -p target/bench
	target/release/podroute-bench bfd | tee target/bench/bfd.json
	nice -n 10 target/release/podroute-bench convergence
	target/release/podroute-bench mesh | tee target/bench/mesh.md
	target/release/podroute-bench mesh --bfd --steady-secs 60 --output target/bench/mesh-bfd.json \
		| tee target/bench/mesh-bfd.md
	target/release/podroute-bench mesh --system kube-router \
		--output target/bench/mesh-kube-router.json | tee target/bench/mesh-kube-router.md
	set -o pipefail; tests/scripts/journaled-scratch.sh target/release/podroute-bench cni-churn | tee target/bench/cni-churn.md
	target/release/podroute-bench bfd-loss | tee target/bench/bfd-loss.md

# The API-outage test of agent/tests/zero_loss.rs with a 10-minute outage (make test runs
# it with 20 s).
SOAK_SECS ?= 600
soak: deps control-plane
	PODROUTE_SOAK_SECS=$(SOAK_SECS) $(CARGO) test -p podroute-agent --test zero_loss \
		restart_during_an_api_server_outage_loses_nothing -- --ignored --nocapture

# The fuzzing campaign (fuzz/README.md): every target for 10^8 executions or
# FUZZ_CAMPAIGN_SECONDS (default 7200 = 2 CPU-hours), whichever comes first, without ASan, then
# its corpus replayed under ASan; new inputs land in fuzz/corpus/, which make test's
# fuzz-smoke replays. Not part of make test.
FUZZ_CAMPAIGN_SECONDS ?= 7200
FUZZ_CAMPAIGN_RUNS ?= 100000000
fuzz:
	FUZZ_SANITIZER=none FUZZ_RUNS=$(FUZZ_CAMPAIGN_RUNS) fuzz/run.sh $(FUZZ_CAMPAIGN_SECONDS) keep

# The light demo needs only the light control plane; cluster mode also the kubelet set and
# the images.
demo: deps
	@case "$(DEMO_MODE)" in cluster|light) ;; *) echo "error: DEMO_MODE is cluster or light, not '$(DEMO_MODE)'" >&2; exit 1;; esac
	@tests/scripts/control-plane.sh >/dev/null
	@if [ "$(DEMO_MODE)" != light ]; then tests/scripts/control-plane.sh cluster >/dev/null && \
		tests/scripts/lab-images.sh target/lab-images >/dev/null; fi
	$(CARGO) build --workspace --bins
	@if [ "$(DEMO_MODE)" = light ]; then tests/scripts/demo.sh $(LAB); else tests/scripts/demo-cluster.sh $(LAB); fi

lab-down: root
	$(CARGO) run -q -p podroute-lab -- down --name $(LAB)

clean:
	$(CARGO) clean
