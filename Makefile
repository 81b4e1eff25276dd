# frp-rs: build, test, demo. `make test` is what CI runs (through .ci/run).
CARGO ?= cargo

.PHONY: build test test-deps demo lint fmt fmt-check clean fuzz

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

# Fuzzes the frame decoder and message parser (fuzz/fuzz_targets/decode.rs)
# for FUZZ_SECONDS; not part of `make test`. The corpus grows in fuzz/corpus/
# and crashing inputs land in fuzz/artifacts/. cargo-fuzz needs nightly-only
# rustc flags (-Zsanitizer=address, sanitizer coverage); only the stable
# toolchain is installed here, so RUSTC_BOOTSTRAP=1 lets stable rustc accept
# them. Stable ships the AddressSanitizer runtime for x86_64 Linux; where it
# does not, run `make fuzz FUZZ_FLAGS=--sanitizer=none`.
FUZZ_SECONDS ?= 60
FUZZ_TARGET ?= decode
FUZZ_FLAGS ?=
# Room for two frames of the largest size (libFuzzer stops at 4096 by default).
FUZZ_MAX_LEN ?= 32772

fuzz:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build $(FUZZ_FLAGS) $(FUZZ_TARGET)
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(FUZZ_FLAGS) $(FUZZ_TARGET) -- \
		-max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN)
