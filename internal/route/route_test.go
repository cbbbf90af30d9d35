package route_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/route"
	"github.com/georeg/georeg/internal/up"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"))
}

// frontDoor runs three regions and a front door before them: clients
// from 127.0.0.1 belong to eastus, 127.0.0.2 to westeurope, 127.0.0.3 to
// southeastasia.
func frontDoor(t *testing.T) (*up.Registry, string) {
	t.Helper()
	reg, door, _ := frontDoorWithRouter(t)
	return reg, door
}

func frontDoorWithRouter(t *testing.T) (*up.Registry, string, *route.Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := up.Start(ctx, up.Config{DataDir: t.TempDir(), Regions: []up.RegionSpec{
		{Name: "eastus", Listen: "127.0.0.1:0"}, {Name: "westeurope", Listen: "127.0.0.1:0"}, {Name: "southeastasia", Listen: "127.0.0.1:0"}}}, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var regions []route.Region
	for i, r := range reg.Regions { // DNS answers 127.0.1.<i+1> for the i-th region
		regions = append(regions, route.Region{Name: r.Name, Endpoint: r.URL, Address: fmt.Sprintf("127.0.1.%d", i+1)})
	}
	router, err := route.New(route.Config{Regions: regions, ProbeInterval: 100 * time.Millisecond,
		Locations: []route.Location{{CIDR: "127.0.0.1/32", Region: "eastus"}, {CIDR: "127.0.0.2/32", Region: "westeurope"}, {CIDR: "127.0.0.3/32", Region: "southeastasia"}},
		Fallback:  map[string][]string{"westeurope": {"eastus", "southeastasia"}}}, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv := &http.Server{Handler: router}
	done := make(chan struct{})
	go func() { _ = srv.Serve(l) }()
	go func() { _ = router.Run(ctx); close(done) }()
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		if err := reg.Wait(); err != nil {
			t.Error(err)
		}
	})
	return reg, "http://" + l.Addr().String(), router
}

// from returns an HTTP client whose connections come from source address ip.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func call(t *testing.T, c *http.Client, method, url string, body []byte, header map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// regionOf waits until a client from ip is routed somewhere and says where.
func regionOf(t *testing.T, door, ip string, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := call(t, from(ip), "GET", door+"/v2/", nil, nil)
		got := resp.Header.Get("X-Georeg-Region")
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a client from %s reaches %q, want %q", ip, got, want)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
}

func TestClientsReachTheirOwnRegion(t *testing.T) {
	_, door := frontDoor(t)
	for ip, want := range map[string]string{"127.0.0.1": "eastus", "127.0.0.2": "westeurope", "127.0.0.3": "southeastasia"} {
		regionOf(t, door, ip, want)
	}
}

// TestAPushSplitAcrossLocationsStaysInOneRegion sends the requests of one
// chunked push alternately from clients of different regions: the session
// names its region and every request on it goes there.
func TestAPushSplitAcrossLocationsStaysInOneRegion(t *testing.T) {
	reg, door := frontDoor(t)
	regionOf(t, door, "127.0.0.2", "westeurope")
	regionOf(t, door, "127.0.0.3", "southeastasia")
	data := bytes.Repeat([]byte("split across locations;"), 50_000)
	d := digest.FromBytes(data)
	// Started in westeurope: on a loaded machine a probe can time out and
	// the door send the start to a fallback for a moment; start again
	// then (an unused session expires).
	var loc string
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp := call(t, from("127.0.0.2"), "POST", door+"/v2/split/app/blobs/uploads/", nil, nil)
		loc = resp.Header.Get("Location")
		if resp.StatusCode == 202 && strings.Contains(loc, "/westeurope.") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("start: %d %s", resp.StatusCode, loc)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
	clients := []string{"127.0.0.3", "127.0.0.1", "127.0.0.2"}
	chunk := len(data) / 3
	for i := range 3 {
		end := (i + 1) * chunk
		if i == 2 {
			end = len(data)
		}
		r := call(t, from(clients[i]), "PATCH", door+loc, data[i*chunk:end], map[string]string{"Content-Range": fmt.Sprintf("%d-%d", i*chunk, end-1)})
		if r.StatusCode != 202 || r.Header.Get("X-Georeg-Region") != "westeurope" {
			t.Fatalf("chunk %d from %s: %d via %s", i, clients[i], r.StatusCode, r.Header.Get("X-Georeg-Region"))
		}
	}
	r := call(t, from("127.0.0.3"), "PUT", door+loc+"?digest="+d.String(), nil, nil)
	if r.StatusCode != 201 || r.Header.Get("X-Georeg-Region") != "westeurope" {
		t.Fatalf("close: %d via %s", r.StatusCode, r.Header.Get("X-Georeg-Region"))
	}
	if got := call(t, http.DefaultClient, "HEAD", reg.ByName["westeurope"].URL+"/v2/split/app/blobs/"+d.String(), nil, nil); got.StatusCode != 200 {
		t.Fatalf("blob in westeurope: %d", got.StatusCode)
	}
}

// TestARegionWithRoutingOffGetsNoClients: with routing to westeurope off,
// its clients go to their fallback.
func TestARegionWithRoutingOffGetsNoClients(t *testing.T) {
	reg, door := frontDoor(t)
	regionOf(t, door, "127.0.0.2", "westeurope")
	r := call(t, http.DefaultClient, "PUT", reg.ByName["southeastasia"].URL+"/_georeg/v1/replications/westeurope",
		[]byte(`{"regionEndpointEnabled":false}`), map[string]string{"Content-Type": "application/json"})
	if r.StatusCode != 200 {
		t.Fatalf("routing off: %d", r.StatusCode)
	}
	// The door reads the flag with its probes: wait for it to refuse the
	// region's own path (a client from westeurope can reach eastus before
	// that for another reason, a probe that found westeurope not Ready).
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := call(t, from("127.0.0.1"), "GET", door+"/region/westeurope/v2/", nil, nil)
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the door still sends requests pinned to westeurope after its routing was turned off: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
	regionOf(t, door, "127.0.0.2", "eastus")
	// Pinned to it, by path or by host: refused, naming why, not sent.
	for _, pin := range []func() *http.Request{
		func() *http.Request { r, _ := http.NewRequest("GET", door+"/region/westeurope/v2/", nil); return r },
		func() *http.Request {
			r, _ := http.NewRequest("GET", door+"/v2/", nil)
			r.Host = "westeurope.registry.test"
			return r
		},
	} {
		resp, err := from("127.0.0.1").Do(pin())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Georeg-Region") != "" || !strings.Contains(string(body), "routing turned off") {
			t.Fatalf("pinned to westeurope with its routing off: %d %q %s", resp.StatusCode, resp.Header.Get("X-Georeg-Region"), body)
		}
	}
}

// TestPinnedEndpoints: a Host naming a region, and the /region/<name>/
// path, go to that region whatever the client's location.
func TestPinnedEndpoints(t *testing.T) {
	_, door := frontDoor(t)
	// The door routes to each region once its probe found it healthy; a
	// request pinned to a region not found healthy yet is refused (503).
	for ip, want := range map[string]string{"127.0.0.1": "eastus", "127.0.0.2": "westeurope", "127.0.0.3": "southeastasia"} {
		regionOf(t, door, ip, want)
	}
	req, _ := http.NewRequest("GET", door+"/v2/", nil)
	req.Host = "southeastasia.registry.test"
	resp, err := from("127.0.0.1").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Georeg-Region"); got != "southeastasia" {
		t.Fatalf("host-pinned request went to %q", got)
	}
	if got := call(t, from("127.0.0.1"), "GET", door+"/region/westeurope/_georeg/v1/status", nil, nil).Header.Get("X-Georeg-Region"); got != "westeurope" {
		t.Fatalf("path-pinned request went to %q", got)
	}
}

// TestDNSModeAnswersEachClientWithItsRegion queries the DNS mode with a
// DNS client library: by source address, by EDNS client subnet, with short
// TTLs, and refusing other names.
func TestDNSModeAnswersEachClientWithItsRegion(t *testing.T) {
	_, door, router := frontDoorWithRouter(t)
	// Every region is probed Ready: each client is routed home.
	for ip, want := range map[string]string{"127.0.0.1": "eastus", "127.0.0.2": "westeurope", "127.0.0.3": "southeastasia"} {
		regionOf(t, door, ip, want)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- route.NewDNS(router, "registry.test").Serve(ctx, conn) }()
	t.Cleanup(func() { cancel(); <-served })

	ask := func(src string, name string, subnet string) *dns.Msg {
		c := &dns.Client{Net: "udp", Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}}
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		if subnet != "" {
			o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
			o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 32, Address: net.ParseIP(subnet).To4()})
			m.Extra = append(m.Extra, o)
		}
		for range 5 { // UDP: a lost datagram is asked again, a bounded number of times
			r, _, err := c.Exchange(m, conn.LocalAddr().String())
			if err == nil {
				return r
			}
		}
		t.Fatalf("no DNS answer for %s from %s", name, src)
		return nil
	}
	// Each client gets its region's address. On a loaded machine a probe
	// may drain a region for a round (its clients then get the fallback,
	// as they should): the answer is asked again until the region is back,
	// within a bound.
	for src, want := range map[string]string{"127.0.0.1": "127.0.1.1", "127.0.0.2": "127.0.1.2", "127.0.0.3": "127.0.1.3"} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			r := ask(src, "registry.test.", "")
			if len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == want && r.Answer[0].Header().Ttl == route.DNSTTL && r.Authoritative {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("from %s: %v, want %s", src, r.Answer, want)
			}
			time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
		}
	}
	if r := ask("127.0.0.1", "registry.test.", "127.0.0.2"); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.1.2" {
		t.Fatalf("by client subnet: %v", r.Answer)
	}
	if r := ask("127.0.0.1", "other.test.", ""); r.Rcode != dns.RcodeRefused {
		t.Fatalf("another name: rcode %d", r.Rcode)
	}
}

// TestARequestADeadNodeDidNotTakeGoesToAnotherNode: a region of two nodes
// gets requests on both in turn; when one dies between probes, reads and
// writes whose bodies it never read go to the other, so every request of
// a client succeeds.
func TestARequestADeadNodeDidNotTakeGoesToAnotherNode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs lockedLog
	log := slog.New(slog.NewTextHandler(&logs, nil))
	start := func() (*up.Registry, context.CancelFunc) {
		c, stop := context.WithCancel(ctx)
		reg, err := up.Start(c, up.Config{DataDir: t.TempDir(), Regions: []up.RegionSpec{{Name: "eastus", Listen: "127.0.0.1:0"}}}, log)
		if err != nil {
			stop()
			t.Fatal(err)
		}
		return reg, stop
	}
	live, stopLive := start()
	defer func() { stopLive(); _ = live.Wait() }()
	doomed, stopDoomed := start()
	router, err := route.New(route.Config{ProbeInterval: time.Hour, // probed once, at start: the dead node stays listed
		Regions: []route.Region{{Name: "eastus", Endpoint: live.Regions[0].URL, Nodes: []string{live.Regions[0].URL, doomed.Regions[0].URL}}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	door, stop := serveDoor(t, ctx, cancel, router)
	defer stop()
	deadline := time.Now().Add(10 * time.Second)
	for healthy, _ := router.Nodes("eastus"); healthy < 2; healthy, _ = router.Nodes("eastus") { // the first probe round
		if time.Now().After(deadline) {
			t.Fatal("the region's nodes never became healthy")
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a bounded wait
	}
	stopDoomed()
	if err := doomed.Wait(); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 10 {
		resp, err := client.Get(door + "/v2/")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("read %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
		blob := []byte(fmt.Sprintf("blob %d", i))
		resp, err = client.Post(door+"/v2/app/blobs/uploads/?digest="+digest.FromBytes(blob).String(), "application/octet-stream", bytes.NewReader(blob))
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("write %d with a body: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}
	// The dead node was tried, and its requests moved on.
	if n := strings.Count(logs.String(), "node did not answer"); n == 0 {
		t.Fatal("no request was sent to the dead node: the test proves nothing")
	}
}

// serveDoor serves router on a loopback port and runs its probes until
// ctx ends; stop cancels ctx, waits for the prober and closes the server.
func serveDoor(t *testing.T, ctx context.Context, cancel context.CancelFunc, router *route.Router) (door string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: router}
	go func() { _ = srv.Serve(l) }()
	done := make(chan struct{})
	go func() { _ = router.Run(ctx); close(done) }()
	return "http://" + l.Addr().String(), func() { cancel(); <-done; srv.Close() }
}

// lockedLog is a log sink several goroutines write.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAReadAHungRegionHoldsGoesToTheNextRegion: westeurope's endpoint is
// a link that stops answering (a hung process: connections are taken,
// nothing comes back). Until the probes drain it, its clients' reads are
// sent there; each is cut at ReadTimeout and answered by the next region,
// and none fails. After the drain they go elsewhere at once.
func TestAReadAHungRegionHoldsGoesToTheNextRegion(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := up.Start(ctx, up.Config{DataDir: t.TempDir(), Regions: []up.RegionSpec{
		{Name: "eastus", Listen: "127.0.0.1:0"}, {Name: "westeurope", Listen: "127.0.0.1:0"}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = reg.Wait() }()
	west, err := link.Start(ctx, strings.TrimPrefix(reg.Regions[1].URL, "http://"), link.Shape{})
	if err != nil {
		t.Fatal(err)
	}
	defer west.Wait()
	router, err := route.New(route.Config{ProbeInterval: 100 * time.Millisecond, ReadTimeout: 300 * time.Millisecond,
		Regions:   []route.Region{{Name: "westeurope", Endpoint: "http://" + west.Addr()}, {Name: "eastus", Endpoint: reg.Regions[0].URL}},
		Locations: []route.Location{{CIDR: "127.0.0.1/32", Region: "eastus"}, {CIDR: "127.0.0.2/32", Region: "westeurope"}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	door, stop := serveDoor(t, ctx, cancel, router)
	defer stop()
	// Both Ready and in rotation: each region's own clients reach it.
	regionOf(t, door, "127.0.0.1", "eastus")
	regionOf(t, door, "127.0.0.2", "westeurope")
	west.Set(link.BlackHole)
	client := from("127.0.0.2")
	client.Timeout = 30 * time.Second // a hang fails the test instead of holding it
	hits := map[string]int{}
	for i := range 20 {
		resp, err := client.Get(door + "/v2/")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("read %d while westeurope hangs: %v %v", i, resp, err)
		}
		resp.Body.Close()
		hits[resp.Header.Get("X-Georeg-Region")]++
	}
	if hits["eastus"] != 20 {
		t.Fatalf("reads answered by %v, want all by eastus", hits)
	}
}
