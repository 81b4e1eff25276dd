# frp-rs: build, test, demo. `make test` is what CI runs (through .ci/run).
CARGO ?= cargo

.PHONY: build test test-deps demo lint fmt fmt-check clean fuzz bench profile

build:
	$(CARGO) build --workspace --release
	@echo "binaries: target/release/frps target/release/frpc"

# Installs what the end-to-end tests need (OpenSSH) when missing, builds the
# binaries the process tests run, then runs every test.
test: test-deps
	$(CARGO) build --workspace
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

test-deps:
	@.ci/install-deps

demo:
	$(CARGO) build --workspace
	$(CARGO) run -q -p e2e --example demo

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clean:
	$(CARGO) clean
	rm -rf demo-run

# Runs every fuzz target (fuzz/fuzz_targets/), one after another, for
# FUZZ_SECONDS each, or only those FUZZ_TARGET names; not part of `make test`.
#   decode     the frame decoder and message parser of every channel, and
#              UDP datagram framing
#   mux        a server-mode multiplexed session fed arbitrary bytes
#   http_head  a user's first bytes on the HTTP virtual host port (or a
#              shared bindPort): the head peek, Host validation, location
#              path normalisation, basic-auth user and route lookup (against
#              a model), and the first-bytes classifier
#   sni        the TLS ClientHello peek (server name, frpc's ALPN) and the
#              https route lookup
#   tcpmux     a user connection to the tcpmux port: hyper's server as frps
#              sets it up, over an in-memory pipe, and frps's CONNECT routing
#   template   the config template engine and number ranges
#   legacy     the legacy INI reader, `convert`'s TOML of it, and frpc's
#              loader on both
#   config     the whole config loader on text: frpc's as sent to its admin
#              API, frps's; TOML, YAML, JSON, guessed, legacy INI
# The corpus grows in fuzz/corpus/TARGET/ (not committed); hand-written
# seeds are read from fuzz/seeds/TARGET/ where there are some (and the
# recorded messages of every protocol version for decode); crashing
# inputs land in fuzz/artifacts/. cargo-fuzz needs nightly-only
# rustc flags (-Zsanitizer=address, sanitizer coverage); only the stable
# toolchain is installed here, so RUSTC_BOOTSTRAP=1 lets stable rustc accept
# them. Stable ships the AddressSanitizer runtime for x86_64 Linux; where it
# does not, run `make fuzz FUZZ_FLAGS=--sanitizer=none`.
FUZZ_SECONDS ?= 60
FUZZ_TARGET ?= decode mux http_head sni tcpmux template legacy config
FUZZ_FLAGS ?=
# Room for two frames of the largest size (libFuzzer stops at 4096 by default).
FUZZ_MAX_LEN ?= 32772

fuzz:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGET); do \
		mkdir -p fuzz/corpus/$$t; \
		seeds=; [ -d fuzz/seeds/$$t ] && seeds=$(CURDIR)/fuzz/seeds/$$t; \
		[ $$t = decode ] && seeds="$$seeds $(wildcard $(CURDIR)/tests/fixtures/wire/v*)"; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build $(FUZZ_FLAGS) $$t && \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(FUZZ_FLAGS) $$t $(CURDIR)/fuzz/corpus/$$t $$seeds -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 || exit 1; \
	done

# Benchmarks the tunnel against a direct connection, two socat relays in a row
# and rathole 0.5.0, on loopback: iperf3 throughput, 64-byte request/response
# latency and rate, connection rate, 10,000 idle connections (open time,
# memory) and SHA-256-checked bulk transfers (tests/examples/bench.rs). Writes
# bench/results.md and prints it with the targets; missed targets do not fail
# the run, lost data does. Then compares our multiplexer with the yamux crate
# (0.13, 0.14) and tokio-yamux on the same workloads (tests/examples/
# muxbench.rs, bench/mux.md), and HTTP through our vhost against nginx in
# front of rathole and of our tcp tunnel, with wrk (tests/examples/
# httpbench.rs, bench/http.md). About ten minutes on 2 cores; the first run also
# installs iperf3 and socat (Debian, as root) and compiles rathole into
# target/bench-tools, a few minutes more. rathole: plain TCP is its default
# transport, so its TLS/noise features (OpenSSL headers) are left out; not
# --locked, as its lock file pins a `time` crate current rustc rejects.
BENCH_TOOLS = $(CURDIR)/target/bench-tools

bench:
	@command -v iperf3 >/dev/null && command -v socat >/dev/null && command -v wrk >/dev/null && [ -x /usr/sbin/nginx ] || { \
		[ "$$(id -u)" = 0 ] || { echo "bench needs iperf3, socat, wrk and nginx: apt-get install iperf3 socat wrk nginx (as root)"; exit 1; }; \
		apt-get install -y iperf3 socat wrk nginx || { apt-get update && apt-get install -y iperf3 socat wrk nginx; }; }
	@$(BENCH_TOOLS)/bin/rathole --version 2>/dev/null | grep -q 'Build Version: *0\.5\.0' || \
		$(CARGO) install rathole --version 0.5.0 --root $(BENCH_TOOLS) \
			--no-default-features --features server,client
	$(CARGO) build --release -p frps -p frpc
	BENCH_RATHOLE=$(BENCH_TOOLS)/bin/rathole $(CARGO) run --release -p e2e --example bench
	$(CARGO) run --release -p e2e --example muxbench
	BENCH_RATHOLE=$(BENCH_TOOLS)/bin/rathole $(CARGO) run --release -p e2e --example httpbench

# Profiles one bench workload through our tunnel (defaults) with perf,
# system-wide, and draws a flamegraph with inferno (installed into
# target/bench-tools): make profile PROFILE_WORKLOAD=rate
# (iperf, latency, rate, conns or scale). Writes target/profile/WORKLOAD.svg
# (threads are named frps-worker / frpc-worker; the load generator's are
# tokio-rt-worker) and a flat summary, WORKLOAD.txt; bench/results.md is
# left alone. Needs perf (Debian: linux-perf) and root or
# perf_event_paranoid <= 1 for system-wide recording.
PROFILE_WORKLOAD ?= iperf
PROFILE_DIR = $(CURDIR)/target/profile

profile:
	@command -v perf >/dev/null || { \
		[ "$$(id -u)" = 0 ] || { echo "profile needs perf: apt-get install linux-perf (as root)"; exit 1; }; \
		apt-get install -y linux-perf || { apt-get update && apt-get install -y linux-perf; }; }
	@command -v iperf3 >/dev/null || apt-get install -y iperf3
	@[ -x $(BENCH_TOOLS)/bin/inferno-flamegraph ] || \
		$(CARGO) install inferno --version 0.12.8 --locked --root $(BENCH_TOOLS)
	$(CARGO) build --release -p frps -p frpc
	$(CARGO) build --release -p e2e --example bench
	mkdir -p $(PROFILE_DIR)
	BENCH_SETUPS=ours BENCH_WORKLOADS=$(PROFILE_WORKLOAD) \
		BENCH_RESULTS=$(PROFILE_DIR)/$(PROFILE_WORKLOAD).md \
		perf record -F 499 -a --call-graph dwarf,8192 -o $(PROFILE_DIR)/$(PROFILE_WORKLOAD).data -- \
		$(CURDIR)/target/release/examples/bench
	{ for sort in comm comm,dso comm,dso,sym; do \
		perf report -i $(PROFILE_DIR)/$(PROFILE_WORKLOAD).data --stdio --no-children -g none \
			--sort $$sort --percent-limit 0.5 2>/dev/null | grep -v '^#' | grep .; echo; \
	done; } > $(PROFILE_DIR)/$(PROFILE_WORKLOAD).txt
	perf script -i $(PROFILE_DIR)/$(PROFILE_WORKLOAD).data 2>/dev/null \
		| $(BENCH_TOOLS)/bin/inferno-collapse-perf \
		| $(BENCH_TOOLS)/bin/inferno-flamegraph --title "$(PROFILE_WORKLOAD) through frps/frpc" \
		> $(PROFILE_DIR)/$(PROFILE_WORKLOAD).svg
	@echo "flamegraph: $(PROFILE_DIR)/$(PROFILE_WORKLOAD).svg, summary: $(PROFILE_DIR)/$(PROFILE_WORKLOAD).txt"
