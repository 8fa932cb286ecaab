# CI entry: `make test` runs every check, in order. Respects CARGO_TARGET_DIR (default: target).

CARGO ?= cargo
NPM ?= npm
CARGO_TARGET_DIR ?= target
export CARGO_TARGET_DIR
# Absolute path of the debug binary, whether CARGO_TARGET_DIR is relative or absolute.
RAFTCAST_BIN := $(abspath $(CARGO_TARGET_DIR))/debug/raftcast

.NOTPARALLEL:

.PHONY: js-test-redis test fmt-check clippy build cargo-test js-test js-test-cluster browser-test chaos-smoke bench-smoke security

test: fmt-check clippy build cargo-test js-test js-test-cluster js-test-redis chaos-smoke bench-smoke browser-test security

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build:
	$(CARGO) build --workspace

cargo-test:
	$(CARGO) test --workspace

# The JS end-to-end suite (official socket.io-client) against one node.
js-test:
	cd tests/js && $(NPM) ci --no-audit --no-fund && RAFTCAST_TOPOLOGY=single RAFTCAST_BIN=$(RAFTCAST_BIN) $(NPM) test

# The same suite against a 3-node cluster (clients on node 2, API calls on nodes 1 and 3).
js-test-cluster:
	cd tests/js && $(NPM) ci --no-audit --no-fund && RAFTCAST_TOPOLOGY=cluster RAFTCAST_BIN=$(RAFTCAST_BIN) $(NPM) test

# The same suite against two nodes in Redis mode on a private redis-server (clients on node 2,
# API calls on node 1). Needs redis-server on PATH (.ci/run installs it).
js-test-redis:
	cd tests/js && $(NPM) ci --no-audit --no-fund && RAFTCAST_TOPOLOGY=redis RAFTCAST_BIN=$(RAFTCAST_BIN) $(NPM) test

# The status page in headless Chromium (Debian's chromium, driven by playwright-core)
# against a three-node cluster; screenshots in tests/browser/artifacts/.
browser-test:
	cd tests/browser && $(NPM) ci --no-audit --no-fund && RAFTCAST_BIN=$(RAFTCAST_BIN) $(NPM) test

# A short chaos run: a 3-node cluster under load with a leader kill, a paused follower and an
# isolated leader; fails on any lost, duplicated or reordered durable event (docs/chaos.md).
chaos-smoke:
	mkdir -p $(CARGO_TARGET_DIR)/chaos
	$(RAFTCAST_BIN) chaos --duration 90s --seed 1 --fault-every 10s \
		--faults kill-leader,pause-follower,isolate-leader \
		--binary $(RAFTCAST_BIN) --out $(abspath $(CARGO_TARGET_DIR))/chaos/ci.json

# The benchmark harness in smoke mode (seconds, few connections; debug builds) so it keeps
# working. The full run is `bench/run.sh` (see bench/README.md).
bench-smoke:
	bench/run.sh --smoke --debug --no-build --out $(abspath $(CARGO_TARGET_DIR))/bench-smoke

# Security checks (docs/security.md): dependency hygiene with cargo-deny (installed by
# .ci/run; the advisories check needs the network and is left out), the 5,000-connection
# flood, and a longer property-test run of the decoders. The security_* tests and the
# default-size property tests also run in cargo-test.
CARGO_DENY ?= cargo-deny
FLOOD_CONNECTIONS ?= 5000
FLOOD_SECONDS ?= 15
SECURITY_PROPTEST_CASES ?= 2000
security:
	$(CARGO_DENY) --version
	$(CARGO_DENY) check bans licenses sources
	FLOOD_CONNECTIONS=$(FLOOD_CONNECTIONS) FLOOD_SECONDS=$(FLOOD_SECONDS) $(CARGO) test --test security_flood -- --ignored --nocapture
	PROPTEST_CASES=$(SECURITY_PROPTEST_CASES) $(CARGO) test --test prop_decoders
	PROPTEST_CASES=$(SECURITY_PROPTEST_CASES) $(CARGO) test -p raftcast-raft --test prop_wire
