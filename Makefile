# switchboard — make targets. `make run` starts a server on the built-in defaults;
# `make ci` is what CI runs (.ci/run) and what must pass before anything lands.

GO        ?= go
PKGS      ?= ./...
BIN       := bin/switchboard
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# An iteration count rather than a duration: with a duration, go test's fuzzing sometimes
# ends with "context deadline exceeded" when the time runs out while a worker is busy.
FUZZTIME  ?= 100000x
# FuzzConnInput runs each input over a loopback connection of a live server: ~200 a second.
FUZZCONNTIME ?= 3000x
BENCHTIME ?= 1s
BENCHCOUNT ?= 1

.PHONY: all build run test race lint fmt vet staticcheck fuzz bench loadtest loadtest-quick loadtest-100k ci ci-repeat clean node-test node-build

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/switchboard

run: build
	./$(BIN) serve

test:
	$(GO) test -count=1 $(PKGS)

race:
	$(GO) test -race -count=1 $(PKGS)

fmt:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# staticcheck is pinned in go.mod as a tool: `go tool staticcheck`.
staticcheck:
	$(GO) tool staticcheck $(PKGS)

lint: fmt vet staticcheck

# A short fuzzing pass over the decoders (frames, PROXY headers) and over what a live
# server does with a connection's arbitrary input; the seeds run in every `make test`.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./codec/
	$(GO) test -run '^$$' -fuzz '^FuzzProxyHeader$$' -fuzztime $(FUZZTIME) ./internal/proxyproto/
	$(GO) test -run '^$$' -fuzz '^FuzzConnInput$$' -fuzztime $(FUZZCONNTIME) ./server/

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) $(PKGS)

# The TypeScript client (clients/node): npm ci installs its pinned dev dependencies
# (typescript, @types/node) only when package-lock.json changed since the last install;
# tsc builds dist/; node --test runs its tests against bin/switchboard. It runs before
# `test` in ci because internal/e2e's Go↔TypeScript test uses the built dist/.
NODE_DIR := clients/node
NPM      ?= npm
NODE     ?= node

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json $(NODE_DIR)/package.json
	cd $(NODE_DIR) && $(NPM) ci --no-audit --no-fund --loglevel=error

node-build: $(NODE_DIR)/node_modules/.package-lock.json
	cd $(NODE_DIR) && ./node_modules/.bin/tsc -p tsconfig.json

node-test: build node-build
	cd $(NODE_DIR) && SWITCHBOARD_BIN=$(CURDIR)/$(BIN) $(NODE) --test test/*.test.mjs

ci: lint node-test test race fuzz

# CI N times on fresh clones of HEAD (HOG=1: with every core kept busy); prints the count
# of green runs. Commit first: uncommitted changes are not in the clones.
N ?= 10
ci-repeat:
	HOG=$(HOG) scripts/ci-repeat.sh $(N)

clean:
	rm -rf bin results $(NODE_DIR)/dist

# The standard benchmark set (docs/BENCHMARKS.md) against servers it starts itself;
# results/ is git-ignored. `make loadtest-quick` is a short smoke version.
loadtest: build
	scripts/loadtest.sh

loadtest-quick: build
	scripts/loadtest.sh quick

# 100,000 connections over 6 nodes, twice (issue 12); `CONNS=114000 RUNS=1 make loadtest-100k`
# for 19,000 a node.
loadtest-100k: build
	scripts/bench-100k.sh
