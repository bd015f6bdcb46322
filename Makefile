# abacus: the two commands a newcomer needs are `go run ./cmd/server` and `make test`.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN      := bin/abacus

.PHONY: build test tools unit chart-test chart-docs fuzz-brief bench image screenshots clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/server

# test installs what its tests need when it is missing (tools), runs
# every test with the race detector (scripts/test.sh: the end-to-end
# package in two halves at once), then fuzzes the HTTP parsing briefly,
# then the chart and image checks.
test: tools
	$(GO) vet ./...
	GO=$(GO) scripts/test.sh
	$(MAKE) fuzz-brief
	$(MAKE) chart-test

# tools installs kcat, gcc, npm, Chromium, promtool (Debian packages) and
# the chart tools when they are missing; on a machine that has them it only
# checks, in a few seconds (scripts/install-test-deps.sh).
tools:
	@bash scripts/install-test-deps.sh

# fuzz-brief runs each HTTP fuzz target for FUZZTIME (the plain test run
# above only replays their seeds); make chaos fuzzes them for CHAOS_FUZZTIME
# each. A failure leaves its input in internal/api/testdata/fuzz to replay.
# scripts/fuzz.sh runs one target, once more if Go's fuzz coordinator fails
# on its own deadline with no input written (golang/go#75804, Go < 1.27).
FUZZ_TARGETS := FuzzKeyPath FuzzKeyRoundTrip FuzzScanQuery FuzzDecodeCursor FuzzCopyEvents
FUZZTIME ?= 5s
CHAOS_FUZZTIME ?= 10s
fuzz-brief:
	@for f in $(FUZZ_TARGETS); do \
		GO=$(GO) scripts/fuzz.sh $$f $(FUZZTIME) || exit 1; \
	done

chart-test:
# The chart, Dockerfile and image checks live in the nested module test/chart
# (it keeps the Kubernetes libraries out of go.mod). helm is looked up in
# $(go env GOPATH)/bin, where scripts/install-chart-tools.sh puts it, even if
# that is not on PATH, and promtool (the alerts' and the dashboard's PromQL)
# on PATH, where Debian's prometheus package puts it (make tools); a missing
# tool fails the target, it is never skipped.
# When internal/config, internal/api or internal/broker gains a dependency,
# test/chart/go.mod needs `go mod tidy` too; the target says so instead of
# failing obscurely.
	@gobin="$$($(GO) env GOPATH | cut -d: -f1)/bin"; \
	helm="$${HELM:-$$gobin/helm}"; \
	lint="$${DOCKERFILELINT:-$(CURDIR)/test/chart/.tools/node_modules/.bin/dockerfilelint}"; \
	for tool in "$$helm" "$$lint"; do \
		if [ ! -x "$$tool" ]; then \
			echo "chart-test: $$tool is missing: run make tools" >&2; exit 1; \
		fi; \
	done; \
	promtool="$${PROMTOOL:-$$(command -v promtool)}"; \
	if [ ! -x "$$promtool" ]; then \
		echo "chart-test: promtool is missing: run make tools (Debian: apt-get install prometheus)" >&2; exit 1; \
	fi; \
	cd test/chart || exit 1; \
	if ! $(GO) mod tidy -diff >/dev/null; then \
		echo "chart-test: test/chart/go.mod lags the packages it imports from the root module; run: (cd test/chart && go mod tidy)" >&2; exit 1; \
	fi; \
	set -x; \
	$(GO) vet ./... && \
	HELM="$$helm" DOCKERFILELINT="$$lint" PROMTOOL="$$promtool" $(GO) test -count=1 -timeout 10m ./...

# chart-docs writes the table of every chart value into
# charts/abacus/README.md from the comments of values.yaml and the types of
# values.schema.json; make chart-test fails while the README lags them.
chart-docs:
	cd test/chart && $(GO) run ./cmd/chartdocs

# bench measures throughput, restore rate and peak RSS against one kfake
# broker, then a rolling restart of three members under a steady input,
# then the takeover of a member lost with its disk, then windowed stores
# beside the count store on the same input (about 8 minutes; figures and
# how to read them in BENCHMARKS.md).
# It fails only on errors; a missed target is printed as MISSED.
bench:
	$(GO) test -run='^$$' -bench='Core|RollingRestart|Takeover|Windows' -benchtime=1x -count=1 -timeout 40m ./bench/

image:
# One command, checked against the Dockerfile by test/chart (make -n image):
# VERSION and COMMIT become main.version and main.commit in the binary, as
# in `make build`. Name the image with IMAGE=registry/abacus:tag (default
# abacus:$(VERSION)).
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --file Dockerfile --tag $(or $(IMAGE),abacus:$(VERSION)) .

# chaos runs the long chaos tests of docs/reliability.md (about 20 minutes):
# rolling kill -9, scale-down and broker cuts over 1M records under both
# guarantees, damaged and full disks, HTTP abuse; then fuzzes the HTTP
# input parsers for CHAOS_FUZZTIME each. ABACUS_CHAOS_SEED=<n> replays a
# schedule; `make test` runs the short versions. Everything it prints also
# goes to CHAOS_REPORT, which ends with a summary: every test's verdict and
# what each scenario measured (each kill -9 is left to the full output).
CHAOS_REPORT ?= chaos-report.txt
.PHONY: chaos chaos-open-bugs
chaos:
	@status=0; : > $(CHAOS_REPORT); \
	{ ABACUS_CHAOS=long $(GO) test -race -count=1 -timeout 60m -v -run 'Chaos' ./e2e/ 2>&1 || echo "chaos tests: FAILED" ; } | tee -a $(CHAOS_REPORT); \
	for f in $(FUZZ_TARGETS); do \
		{ GO=$(GO) scripts/fuzz.sh $$f $(CHAOS_FUZZTIME) 2>&1 && echo "fuzz $$f: passed" || echo "fuzz $$f: FAILED" ; } | tee -a $(CHAOS_REPORT); \
	done; \
	grep -q ': FAILED$$' $(CHAOS_REPORT) && status=1; \
	{ echo; echo "== summary ($$(date -u +%FT%TZ), $$(git describe --always --dirty 2>/dev/null)) =="; \
	  grep -E '^(--- |ok |FAIL|chaos tests: |fuzz [A-Za-z]+: )|^ +[a-z_]+_test.go:[0-9]+: (\[ *[0-9.]+s\]|lookups during|partitions active on two|[^:]+: noticed|round [0-9]+:|slow loris|burst)' $(CHAOS_REPORT) \
	  | grep -v -e '^    --- PASS: .*/' -e '/internal/api' -e '] kill -9 ' ; } > $(CHAOS_REPORT).summary; \
	cat $(CHAOS_REPORT).summary >> $(CHAOS_REPORT); rm -f $(CHAOS_REPORT).summary; \
	echo "make chaos: report in $(CHAOS_REPORT)"; \
	exit $$status

# The test of a limitation still open (docs/reliability.md, "Known
# limitations"); it fails.
chaos-open-bugs:
	ABACUS_CHAOS_OPEN_BUGS=1 ABACUS_CHAOS=long $(GO) test -race -count=1 -timeout 30m -v -run 'TestChaosDamageUnderRunningInstance' ./e2e/

# screenshots refreshes the images of docs/console.md (docs/console/*.png,
# 1280x800): the console's pages in headless Chromium against three members
# and a kfake broker, as e2e/console's TestConsole drives them.
screenshots: tools
	ABACUS_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -run '^TestConsole$$' ./e2e/console/

clean:
	rm -rf bin
