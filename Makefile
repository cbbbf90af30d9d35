# georeg: `make test` installs what the tests need (crane, regctl, oras, helm and the S3
# server versitygw through the Go module proxy into .tools/bin; skopeo,
# containerd, chromium and PostgreSQL from Debian), starts the servers,
# runs every test and stops them. `make bench` prints the benchmark table.

SHELL := /bin/bash
TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)
export GOFLAGS := -mod=mod
# Files tests leave to look at (the dashboard's screenshot).
export GEOREG_ARTIFACTS := $(CURDIR)/artifacts
CRANE_VERSION        := v0.22.1
REGCTL_VERSION       := v0.11.7
ORAS_VERSION         := v1.3.6
HELM_VERSION         := v3.22.0
DISTRIBUTION_VERSION := v3.1.2
# The OCI conformance suites, at versions the module proxy serves: the
# main branch's (August 2026) and the ginkgo suite of the v1.1 series
# (November 2023; the v1.1.1 tag's commit is not served).
CONFORMANCE_MAIN   := v0.0.0-20260831232431-97274622c111
CONFORMANCE_GINKGO := v0.0.0-20231101194043-f2182352d4cc

.PHONY: test tools lint fuzz bench bench-shared bench-scale bench-softdelete bench-encryption build soak chaos mutate services-start services-stop

# For running single tests by hand: make services-start, then
# `. .tools/run/env && go test ./internal/meta/`, then make services-stop.
services-start:
	scripts/services start

services-stop:
	scripts/services stop

build:
	go build -o bin/georeg ./cmd/georeg

tools: $(TOOLS)/crane $(TOOLS)/regctl $(TOOLS)/oras $(TOOLS)/helm /usr/bin/skopeo /usr/bin/ctr /usr/bin/chromium /usr/bin/docker-registry \
	/usr/bin/softhsm2-util $(TOOLS)/oci-conformance $(TOOLS)/oci-conformance-ginkgo.test

$(TOOLS)/crane:
	GOBIN=$(TOOLS) go install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)

$(TOOLS)/regctl:
	GOBIN=$(TOOLS) go install github.com/regclient/regclient/cmd/regctl@$(REGCTL_VERSION)

$(TOOLS)/oras:
	GOBIN=$(TOOLS) go install oras.land/oras/cmd/oras@$(ORAS_VERSION)

$(TOOLS)/helm:
	GOBIN=$(TOOLS) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# Built from the module at its pinned version (scripts/conformance copies
# it out of the read-only module cache); never copied into the project.
$(TOOLS)/oci-conformance:
	scripts/conformance $(CONFORMANCE_MAIN) build $@

$(TOOLS)/oci-conformance-ginkgo.test:
	scripts/conformance $(CONFORMANCE_GINKGO) test $@

/usr/bin/skopeo /usr/bin/ctr:
	(apt-get install -y --no-install-recommends skopeo containerd || \
	 (apt-get update -qq && apt-get install -y --no-install-recommends skopeo containerd)) >/dev/null

# SoftHSM2, the token behind the KMS v2 plugin the encryption tests run
# (cmd/georeg-kms-pkcs11 over PKCS#11).
/usr/bin/softhsm2-util:
	(apt-get install -y --no-install-recommends softhsm2 || \
	 (apt-get update -qq && apt-get install -y --no-install-recommends softhsm2)) >/dev/null

# Debian's Chromium, for the dashboard test (chromedp drives it headless).
/usr/bin/chromium:
	(apt-get install -y --no-install-recommends chromium || \
	 (apt-get update -qq && apt-get install -y --no-install-recommends chromium)) >/dev/null

lint:
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	go vet ./...

# The servers the tests need (PostgreSQL, an S3 server) run on 127.0.0.1
# for the run only: scripts/services starts them and stops them after,
# whatever the tests did.
# The region and registry suites run twice: on the filesystem and SQLite,
# then on a PostgreSQL database and an S3 bucket per region.
test: tools lint
	@trap 'scripts/services stop' EXIT INT TERM; scripts/services start && \
	. .tools/run/env && go test -count=1 -timeout 12m ./... && \
	GEOREG_TEST_REGION_STORES=shared go test -count=1 -timeout 10m ./internal/region/ ./internal/up/

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
	go test ./internal/meta -run '^$$' -fuzz '^FuzzSnapshotArgs$$' -fuzztime 20s
	go test ./internal/meta -run '^$$' -fuzz '^FuzzSnapshotRepoAppendJSON$$' -fuzztime 20s

# The node figures are measured beside two peer registries in the same run.
bench: build $(TOOLS)/registry /usr/bin/docker-registry
	go run ./bench -georeg bin/georeg -distribution3 $(TOOLS)/registry

# Peers for make bench: distribution v3 from its module, Debian's
# distribution 2.8 (its service is not started: policy-rc.d or no systemd).
$(TOOLS)/registry:
	GOBIN=$(TOOLS) go install github.com/distribution/distribution/v3/cmd/registry@$(DISTRIBUTION_VERSION)

/usr/bin/docker-registry:
	(apt-get install -y --no-install-recommends docker-registry || \
	 (apt-get update -qq && apt-get install -y --no-install-recommends docker-registry)) >/dev/null

# Encryption at rest against none: georeg serve both ways, alternated.
bench-encryption: build
	go run ./bench -georeg bin/georeg -only encryption

# Replication's cost against the number of regions (3 and 6 regions as
# processes, a seventh joining), and anti-entropy rounds at 20k and 1M
# generated manifests.
bench-scale: build
	go run ./bench -georeg bin/georeg -only scale
	go run ./bench -georeg bin/georeg -only antientropy
	go run ./bench -georeg bin/georeg -only snapjoin

# The same node figures on PostgreSQL and S3 (the servers run for the run).
bench-shared: build
	@trap 'scripts/services stop' EXIT INT TERM; scripts/services start && \
	. .tools/run/env && go run ./bench -georeg bin/georeg -only shared

# The fault-injection suite (e2e/faults_test.go) with each fault repeated
# for GEOREG_CHAOS (fault, kill -9, heal cycles); make test runs each for 4 s.
GEOREG_CHAOS ?= 2m
chaos: tools
	GEOREG_CHAOS=$(GEOREG_CHAOS) go test ./e2e -run '^TestFaultInjection$$' -count=1 -v -timeout 90m

# Deliberate breaks of each invariant (mutate/*.patch): each must make the
# tests it names fail (scripts/mutate).
mutate:
	@trap 'scripts/services stop' EXIT INT TERM; scripts/services start && scripts/mutate

# Soft delete's figures: 100 restores at the default simulated distance,
# how long until each is pullable in every region (p50, p99).
bench-softdelete:
	GEOREG_RESTORES=100 go test ./internal/up -run '^TestRestoreVisibleEverywhereFigures$$' -count=1 -v -timeout 20m

# The garbage-collection soaks (plain, and with soft delete and retention)
# for two minutes each (make test runs them for 6 s).
soak:
	GEOREG_SOAK=2m go test ./internal/up -run '^(TestGCSoak|TestSoftDeleteSoak)$$' -count=1 -v -timeout 10m
