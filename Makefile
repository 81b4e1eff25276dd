# frp-rs: build, test, demo. `make test` is what CI runs (through .ci/run).
CARGO ?= cargo

.PHONY: build test test-deps demo lint fmt fmt-check clean

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
