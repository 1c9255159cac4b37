# mxsurvey: `make demo` runs the whole product on the lab; `make test` runs
# every test (CI runs exactly `make test` after installing dependencies).
GO      ?= go
BIN     := bin/mxsurvey
PKGS    := ./...
# A count, not a duration: a duration that ends while the fuzzer minimises a
# new input fails the run with "context deadline exceeded" (a go test quirk).
FUZZTIME ?= 30000x
DEMO_DOMAINS ?= 2000
DEMO_OUT ?= out/demo

.PHONY: build check test labcheck bench-smoke vet fmt race fuzz fuzz-short bench demo realservers notebook duckdb clean

build:
	$(GO) build -o $(BIN) ./cmd/mxsurvey

# check = what must be green before every commit.
check: fmt vet race

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags profiled ./cmd/mxsurvey

race:
	$(GO) test -race -shuffle=on -timeout 15m $(PKGS)

# test = the README's test command: check, short fuzzing of every parser of
# server-sent bytes, one lab scan that the notebook and the DuckDB
# cross-check both read, and the benchmark harness at its smallest size.
test: check fuzz-short labcheck bench-smoke

bench-smoke:
	scripts/bench.sh --smoke

labcheck: build
	scripts/labscan.sh 1000 out/test -quiet
	scripts/notebook.sh out/test/report
	scripts/duckdb.sh out/test/scan out/test/report

# Each fuzz target for FUZZTIME executions (go test -fuzz takes one target at a time).
fuzz-short:
	@scripts/fuzz.sh $(FUZZTIME)

fuzz:
	@scripts/fuzz.sh 2000000x

bench: build
	scripts/bench.sh

demo: build
	scripts/demo.sh $(DEMO_DOMAINS) $(DEMO_OUT)

realservers:
	bash realservers/install.sh
	MXSURVEY_REALSERVERS=1 $(GO) test -count=1 -v ./realservers/

notebook: build
	scripts/notebook.sh

duckdb: build
	scripts/duckdb.sh

clean:
	rm -rf bin out
