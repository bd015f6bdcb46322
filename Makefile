# abacus: the two commands a newcomer needs are `go run ./cmd/server` and `make test`.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/abacus

.PHONY: build test unit chart-test bench image clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/server

# test runs every test with the race detector, then the chart and image checks.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 25m ./...
	$(MAKE) chart-test

chart-test:
	@echo "chart tests: not yet written"

bench:
	@echo "benchmarks: not yet written"

image:
	@echo "image: not yet written"

clean:
	rm -rf bin
