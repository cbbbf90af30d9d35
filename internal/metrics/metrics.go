// Package metrics holds georeg's Prometheus metrics (client_golang): one
// registry per region node and one per front door, so several regions in
// one process (georeg up, tests) keep theirs apart. Every metric of a node
// carries the label region.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Node is one region node's metrics.
type Node struct {
	reg    *prometheus.Registry
	labels prometheus.Labels

	requests *prometheus.CounterVec   // route, method, code
	duration *prometheus.HistogramVec // route, method
	bytesIn  *prometheus.CounterVec   // route
	bytesOut *prometheus.CounterVec   // route

	replicationLag     *prometheus.HistogramVec // peer
	replicationApplied *prometheus.CounterVec   // peer, kind
	antiEntropyRounds  *prometheus.CounterVec   // peer, outcome
	antiEntropyRepairs *prometheus.CounterVec   // peer
	fetchFailures      *prometheus.CounterVec   // peer, reason

	webhookDeliveries *prometheus.CounterVec   // action, outcome
	webhookLatency    *prometheus.HistogramVec // outcome

	cachePulls    *prometheus.CounterVec // rule, outcome
	cacheUpstream *prometheus.CounterVec // rule

	gcRuns       *prometheus.CounterVec // mode (sweep or dry-run), outcome
	gcBlobs      prometheus.Counter
	gcBytesFreed prometheus.Counter
}

// WatchWrites exports the metadata store's write transactions and their
// wait for the write lock (meta.DB.WriteStats), read at each scrape.
func (m *Node) WatchWrites(stats func() (int64, time.Duration)) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "georeg_metadata_write_transactions_total",
			Help: "Writes of this node to the metadata store (on PostgreSQL several share a transaction: group commit).", ConstLabels: m.labels},
			func() float64 { n, _ := stats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "georeg_metadata_write_lock_wait_seconds_total",
			Help: "Time this node's writes waited for their turn (on PostgreSQL their place in the node's queue and the locks of what they write; on SQLite the writing connection).", ConstLabels: m.labels},
			func() float64 { _, w := stats(); return w.Seconds() }))
}

// TrafficCount is the bytes of one kind of traffic with one peer ("" for
// clients) since the process started (region.CountTraffic).
type TrafficCount struct {
	Kind, Peer string
	Bytes      int64
}

// WatchTraffic exports totals, read at each scrape, as
// georeg_traffic_bytes_total{kind, peer}.
func (m *Node) WatchTraffic(totals func() []TrafficCount) {
	m.reg.MustRegister(&trafficCollector{totals: totals, desc: prometheus.NewDesc("georeg_traffic_bytes_total",
		"Blob bytes this node served to clients (kind served, served_readthrough) and received from peers (kind received, received_readthrough), per peer.",
		[]string{"kind", "peer"}, m.labels)})
}

type trafficCollector struct {
	totals func() []TrafficCount
	desc   *prometheus.Desc
}

func (c *trafficCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *trafficCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.totals() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(t.Bytes), t.Kind, t.Peer)
	}
}

// CachePull counts a pull of a cached repository's manifest by outcome
// (cache.Puller).
func (m *Node) CachePull(rule, outcome string) { m.cachePulls.WithLabelValues(rule, outcome).Inc() }

// CacheUpstreamBytes counts blob bytes the cache fetched from rule's
// upstream.
func (m *Node) CacheUpstreamBytes(rule string, n int64) {
	m.cacheUpstream.WithLabelValues(rule).Add(float64(max(n, 0)))
}

// Storage is what a region stores, as georeg usage counts it.
type Storage struct {
	Stored, Logical, Manifests int64
}

// WatchStorage exports read (a figure at most a minute old:
// region.RecentUsage), read at each scrape, as
// georeg_storage_bytes{kind}; nothing when read fails.
func (m *Node) WatchStorage(read func() (Storage, bool)) {
	m.reg.MustRegister(&storageCollector{read: read, desc: prometheus.NewDesc("georeg_storage_bytes",
		"What the region stores, read at most a minute ago: blob bytes each once (kind stored), each per repository linking it (logical), and live manifests' bytes (manifests).",
		[]string{"kind"}, m.labels)})
}

type storageCollector struct {
	read func() (Storage, bool)
	desc *prometheus.Desc
}

func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.read()
	if !ok {
		return
	}
	for kind, v := range map[string]int64{"stored": s.Stored, "logical": s.Logical, "manifests": s.Manifests} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), kind)
	}
}

// NewNode returns the metrics of region, with Go runtime and process
// metrics.
func NewNode(region string) *Node {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	labels := prometheus.Labels{"region": region}
	m := &Node{reg: reg, labels: labels}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_http_requests_total",
		Help: "HTTP requests served, by route class, method and status code.", ConstLabels: labels}, []string{"route", "method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "georeg_http_request_duration_seconds",
		Help: "Time to serve a request, to the end of its body.", ConstLabels: labels,
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"route", "method"})
	m.bytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_http_received_bytes_total",
		Help: "Request body bytes received (uploads, manifests).", ConstLabels: labels}, []string{"route"})
	m.bytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_http_sent_bytes_total",
		Help: "Response body bytes sent (blobs, manifests).", ConstLabels: labels}, []string{"route"})
	m.replicationLag = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "georeg_replication_lag_seconds",
		Help:        "From a manifest's commit (its 201) in the origin region to its apply here, per origin peer.",
		ConstLabels: labels, Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}, []string{"peer"})
	m.replicationApplied = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_replication_applied_total",
		Help: "Feed records of a peer applied here, by kind.", ConstLabels: labels}, []string{"peer", "kind"})
	m.antiEntropyRounds = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_antientropy_rounds_total",
		Help: "Anti-entropy rounds against a peer, by outcome (ok, error, skipped: the peer's feed had records not fetched yet).", ConstLabels: labels}, []string{"peer", "outcome"})
	m.antiEntropyRepairs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_antientropy_repaired_total",
		Help: "Repositories (and the settings, counted as one) anti-entropy found different from a peer's and repaired.", ConstLabels: labels}, []string{"peer"})
	m.fetchFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_replication_fetch_failures_total",
		Help: "Blob fetches from a peer that failed on the peer's side and moved to the next region holding the blob (resuming by Range), by reason (stalled: no byte within replication.idleTimeout; error).", ConstLabels: labels}, []string{"peer", "reason"})
	m.webhookDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_webhook_deliveries_total",
		Help: "Webhook delivery attempts by action and outcome (delivered, retry, failed, canceled).", ConstLabels: labels}, []string{"action", "outcome"})
	m.webhookLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "georeg_webhook_delivery_duration_seconds",
		Help: "Time a receiver took to answer an attempt.", ConstLabels: labels, Buckets: prometheus.DefBuckets}, []string{"outcome"})
	m.gcRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_gc_runs_total",
		Help: "Garbage collection runs by mode (sweep, dry-run) and outcome (ok, error).", ConstLabels: labels}, []string{"mode", "outcome"})
	m.gcBlobs = prometheus.NewCounter(prometheus.CounterOpts{Name: "georeg_gc_blobs_deleted_total",
		Help: "Unreferenced blobs garbage collection deleted.", ConstLabels: labels})
	m.gcBytesFreed = prometheus.NewCounter(prometheus.CounterOpts{Name: "georeg_gc_freed_bytes_total",
		Help: "Bytes garbage collection freed.", ConstLabels: labels})
	m.cachePulls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_cache_pulls_total",
		Help: "The artifact cache's work by cache rule and outcome: pulls of a cached repository's manifest served as held (hit), read through from the region that fetched for the registry (peer), or served as held while the upstream could not be asked (stale); and upstream fetches made here (fetched, error: one for all the pulls waiting on it).", ConstLabels: labels}, []string{"rule", "outcome"})
	m.cacheUpstream = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_cache_upstream_bytes_total",
		Help: "Blob bytes the artifact cache fetched from each rule's upstream in this region.", ConstLabels: labels}, []string{"rule"})
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.bytesIn, m.bytesOut, m.replicationLag, m.replicationApplied,
		m.antiEntropyRounds, m.antiEntropyRepairs, m.fetchFailures,
		m.webhookDeliveries, m.webhookLatency, m.gcRuns, m.gcBlobs, m.gcBytesFreed, m.cachePulls, m.cacheUpstream} {
		f(c)
	}
	return m
}

// WithRuntime adds the Go runtime's and the process's collectors: once
// per process (georeg serve), not per region of georeg up.
func (m *Node) WithRuntime() *Node {
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Node) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Request records one served request.
func (m *Node) Request(route, method string, code int, in, out int64, took time.Duration) {
	if m == nil {
		return
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		method = "other" // a label value per odd method would grow without bound
	}
	m.requests.WithLabelValues(route, method, statusText(code)).Inc()
	m.duration.WithLabelValues(route, method).Observe(took.Seconds())
	if in > 0 {
		m.bytesIn.WithLabelValues(route).Add(float64(in))
	}
	if out > 0 {
		m.bytesOut.WithLabelValues(route).Add(float64(out))
	}
}

// statusText avoids an allocation per request for common codes.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 201:
		return "201"
	case 202:
		return "202"
	case 204:
		return "204"
	case 206:
		return "206"
	case 307:
		return "307"
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 416:
		return "416"
	case 500:
		return "500"
	}
	return strconv.Itoa(code)
}

// Applied records a record of peer's feed applied here; lag is from the
// origin's commit, observed for manifests (an image's arrival).
func (m *Node) Applied(peer, kind string, lag time.Duration) {
	if m == nil {
		return
	}
	m.replicationApplied.WithLabelValues(peer, kind).Inc()
	if kind == "manifest" {
		m.replicationLag.WithLabelValues(peer).Observe(lag.Seconds())
	}
}

// AntiEntropy records one anti-entropy round against peer: err nil for a
// round that completed, and how many differences it repaired.
func (m *Node) AntiEntropy(peer string, err error, repaired int) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.antiEntropyRounds.WithLabelValues(peer, outcome).Inc()
	if repaired > 0 {
		m.antiEntropyRepairs.WithLabelValues(peer).Add(float64(repaired))
	}
}

// AntiEntropySkipped records an anti-entropy round against peer skipped
// because peer's feed had records not fetched yet (the feed brings them).
func (m *Node) AntiEntropySkipped(peer string) {
	if m == nil {
		return
	}
	m.antiEntropyRounds.WithLabelValues(peer, "skipped").Inc()
}

// FetchFailed records a blob fetch from peer that failed on the peer's
// side (stalled: cut by the idle bound) and moves to the next region.
func (m *Node) FetchFailed(peer string, stalled bool) {
	if m == nil {
		return
	}
	reason := "error"
	if stalled {
		reason = "stalled"
	}
	m.fetchFailures.WithLabelValues(peer, reason).Inc()
}

// Delivery records one webhook attempt.
func (m *Node) Delivery(action, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.webhookDeliveries.WithLabelValues(action, outcome).Inc()
	m.webhookLatency.WithLabelValues(outcome).Observe(took.Seconds())
}

// GC records a garbage collection run.
func (m *Node) GC(dryRun bool, err error, blobs, bytes int64) {
	if m == nil {
		return
	}
	mode, outcome := "sweep", "ok"
	if dryRun {
		mode = "dry-run"
	}
	if err != nil {
		outcome = "error"
	}
	m.gcRuns.WithLabelValues(mode, outcome).Inc()
	if !dryRun {
		m.gcBlobs.Add(float64(blobs))
		m.gcBytesFreed.Add(float64(bytes))
	}
}

// PeerBacklog is how far this region is behind one peer.
type PeerBacklog struct {
	Peer   string
	Events int64
	Bytes  int64
}

// Progress is this region's replication state for the gauges.
type Progress struct {
	Ready                 bool
	Objects, ObjectsTotal int64
	Bytes, BytesTotal     int64
	Peers                 []PeerBacklog
	StagedBytes           int64 // of broken fetches, kept to resume
}

// WatchReplication adds gauges read from status at each scrape (bounded
// by a 3 s context): backlog in events and bytes per peer, backfill
// progress, and whether the region is Ready.
func (m *Node) WatchReplication(region string, status func(ctx context.Context) (Progress, error)) {
	m.reg.MustRegister(&replicationCollector{status: status, labels: prometheus.Labels{"region": region}})
}

type replicationCollector struct {
	status func(ctx context.Context) (Progress, error)
	labels prometheus.Labels
}

func (c *replicationCollector) desc(name, help string, vars ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, vars, c.labels)
}

const (
	stagedName = "georeg_replication_staged_bytes"
	stagedHelp = "Bytes of broken replication fetches kept to resume by Range."
)

var (
	backlogEventsName = "georeg_replication_backlog_events"
	backlogBytesName  = "georeg_replication_backlog_bytes"
)

func (c *replicationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc(backlogEventsName, "Feed records of a peer not applied here yet.", "peer")
	ch <- c.desc(backlogBytesName, "Blob bytes of a peer's feed not applied here yet.", "peer")
	ch <- c.desc("georeg_backfill_objects", "Feed records applied of all peers' feeds (state applied or total).", "state")
	ch <- c.desc("georeg_backfill_bytes", "Blob bytes applied of all peers' feeds (state applied or total).", "state")
	ch <- c.desc(stagedName, stagedHelp)
	ch <- c.desc("georeg_region_ready", "1 once the region has caught up with every peer (Ready), else 0 (Syncing).")
}

func (c *replicationCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	p, err := c.status(ctx)
	if err != nil {
		return
	}
	g := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	events := c.desc(backlogEventsName, "Feed records of a peer not applied here yet.", "peer")
	bytes := c.desc(backlogBytesName, "Blob bytes of a peer's feed not applied here yet.", "peer")
	for _, peer := range p.Peers {
		g(events, peer.Events, peer.Peer)
		g(bytes, peer.Bytes, peer.Peer)
	}
	objects := c.desc("georeg_backfill_objects", "Feed records applied of all peers' feeds (state applied or total).", "state")
	g(objects, p.Objects, "applied")
	g(objects, p.ObjectsTotal, "total")
	b := c.desc("georeg_backfill_bytes", "Blob bytes applied of all peers' feeds (state applied or total).", "state")
	g(b, p.Bytes, "applied")
	g(b, p.BytesTotal, "total")
	g(c.desc(stagedName, stagedHelp), p.StagedBytes)
	ready := int64(0)
	if p.Ready {
		ready = 1
	}
	g(c.desc("georeg_region_ready", "1 once the region has caught up with every peer (Ready), else 0 (Syncing)."), ready)
}

// Door is the front door's metrics.
type Door struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec // region, reason
	failovers *prometheus.CounterVec // from, to
	healthy   *prometheus.GaugeVec   // region
}

// NewDoor returns the front door's metrics.
func NewDoor() *Door {
	d := &Door{reg: prometheus.NewRegistry()}
	d.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_frontdoor_requests_total",
		Help: "Requests the front door sent to a region, by why (home, fallback, session, pinned, retry)."}, []string{"region", "reason"})
	d.failovers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "georeg_frontdoor_failovers_total",
		Help: "Requests sent away from the client's home region because it could not serve, by home and chosen region."}, []string{"from", "to"})
	d.healthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "georeg_frontdoor_region_routable",
		Help: "1 while a region is healthy, Ready and has routing on, else 0."}, []string{"region"})
	d.reg.MustRegister(d.decisions, d.failovers, d.healthy)
	return d
}

// Handler serves the door's metrics.
func (d *Door) Handler() http.Handler { return promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}) }

// Routed records a routing decision.
func (d *Door) Routed(region, reason string) {
	if d != nil {
		d.decisions.WithLabelValues(region, reason).Inc()
	}
}

// Failover records a request sent to another region than its home.
func (d *Door) Failover(from, to string) {
	if d != nil {
		d.failovers.WithLabelValues(from, to).Inc()
	}
}

// Routable sets whether a region takes traffic.
func (d *Door) Routable(region string, ok bool) {
	if d == nil {
		return
	}
	v := 0.0
	if ok {
		v = 1
	}
	d.healthy.WithLabelValues(region).Set(v)
}
