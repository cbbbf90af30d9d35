# georeg: `make test` installs what the tests need (crane and regctl through
# the Go module proxy into .tools/bin; skopeo, containerd and chromium from Debian),
# then runs every test. `make bench` prints the benchmark table.

SHELL := /bin/bash
TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)
export GOFLAGS := -mod=mod
# Files tests leave to look at (the dashboard's screenshot).
export GEOREG_ARTIFACTS := $(CURDIR)/artifacts
CRANE_VERSION  := v0.22.1
REGCTL_VERSION := v0.11.7

.PHONY: test tools lint fuzz bench build soak

build:
	go build -o bin/georeg ./cmd/georeg

tools: $(TOOLS)/crane $(TOOLS)/regctl /usr/bin/skopeo /usr/bin/ctr /usr/bin/chromium

$(TOOLS)/crane:
	GOBIN=$(TOOLS) go install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)

$(TOOLS)/regctl:
	GOBIN=$(TOOLS) go install github.com/regclient/regclient/cmd/regctl@$(REGCTL_VERSION)

/usr/bin/skopeo /usr/bin/ctr:
	(apt-get install -y --no-install-recommends skopeo containerd || \
	 (apt-get update -qq && apt-get install -y --no-install-recommends skopeo containerd)) >/dev/null

# Debian's Chromium, for the dashboard test (chromedp drives it headless).
/usr/bin/chromium:
	(apt-get install -y --no-install-recommends chromium || \
	 (apt-get update -qq && apt-get install -y --no-install-recommends chromium)) >/dev/null

lint:
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	go vet ./...

test: tools lint
	go test -count=1 -timeout 12m ./...

# Short runs of every fuzz target; the corpus lives in testdata/fuzz.
fuzz:
	go test ./internal/ociapi -run '^$$' -fuzz FuzzParseRoute -fuzztime 20s
	go test ./internal/ociapi -run '^$$' -fuzz FuzzParseRange -fuzztime 20s
	go test ./internal/ociapi -run '^$$' -fuzz FuzzParseContentRange -fuzztime 20s
	go test ./internal/oci -run '^$$' -fuzz FuzzParseManifest -fuzztime 20s
	go test ./internal/oci -run '^$$' -fuzz FuzzValidateRepository -fuzztime 20s
	go test ./internal/feed -run '^$$' -fuzz FuzzParsePage -fuzztime 20s
	go test ./internal/webhook -run '^$$' -fuzz FuzzParseScope -fuzztime 20s
	go test ./internal/webhook -run '^$$' -fuzz FuzzConfig -fuzztime 20s
	go test ./internal/auth -run '^$$' -fuzz '^FuzzParseScopes$$' -fuzztime 20s
	go test ./internal/auth -run '^$$' -fuzz '^FuzzParseRule$$' -fuzztime 20s
	go test ./internal/auth -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime 20s

bench: build
	go run ./bench -georeg bin/georeg

# The garbage-collection soak for two minutes (make test runs it for 6 s).
soak:
	GEOREG_SOAK=2m go test ./internal/up -run '^TestGCSoak$$' -count=1 -v -timeout 10m
