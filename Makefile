# switchboard — make targets. `make run` starts a server on the built-in defaults;
# `make ci` is what CI runs (.ci/run) and what must pass before anything lands.

GO        ?= go
PKGS      ?= ./...
BIN       := bin/switchboard
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 10s
BENCHTIME ?= 1s
BENCHCOUNT ?= 1

.PHONY: all build run test race lint fmt vet staticcheck fuzz bench loadtest loadtest-quick ci ci-repeat clean

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

# A short fuzzing pass over the decoders (frames, PROXY headers); the committed corpus
# runs in every `make test`.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./codec/
	$(GO) test -run '^$$' -fuzz '^FuzzProxyHeader$$' -fuzztime $(FUZZTIME) ./internal/proxyproto/

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) $(PKGS)

ci: lint test race fuzz

# CI N times on fresh clones of HEAD (HOG=1: with every core kept busy); prints the count
# of green runs. Commit first: uncommitted changes are not in the clones.
N ?= 10
ci-repeat:
	HOG=$(HOG) scripts/ci-repeat.sh $(N)

clean:
	rm -rf bin results

# The standard benchmark set (docs/BENCHMARKS.md) against servers it starts itself;
# results/ is git-ignored. `make loadtest-quick` is a short smoke version.
loadtest: build
	scripts/loadtest.sh

loadtest-quick: build
	scripts/loadtest.sh quick
