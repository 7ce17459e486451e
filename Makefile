# vmmount. `make demo` and `make test` work on a fresh Debian machine as root.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN := bin/vmmount
GOFLAGS_BUILD := -trimpath -ldflags "-X main.version=$(VERSION)"
# Tests run long fixtures builds; packages run two at a time on CI's 2 cores.
TESTFLAGS ?= -timeout 60m -p 2
FUZZTIME ?= 30s

.PHONY: all build setup test test-short bench fuzz demo clean vet

all: build

build:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/vmmount

setup:
	./scripts/setup.sh

vet:
	$(GO) vet ./...

# Installs what the tests need, then runs every test (fuzz seeds included).
# libvirt-up.sh starts the libvirtd (QEMU driver) the backup/restore tests use.
test: setup build
	./scripts/libvirt-up.sh
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...

test-short: build
	$(GO) test -short ./...

# Benchmarks against the peer tools on the same data, printing ratios.
bench: setup build
	./scripts/bench.sh

# Runs every fuzz target for FUZZTIME each.
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

demo: setup build
	./scripts/demo.sh

clean:
	rm -rf bin
