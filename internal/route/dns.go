package route

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNSTTL is the TTL of every answer: short, so clients follow failover.
const DNSTTL = 5

// DNS is the front door's DNS mode: an authoritative responder for the
// registry's name that answers each client with the address of the region
// the HTTP mode would choose for it (by EDNS client subnet when the
// resolver sends one, else by the query's source address), from the same
// health state. A region's address is Region.Address, else its endpoint's
// host.
type DNS struct {
	router *Router
	name   string // fully qualified, e.g. registry.example.com.
}

// NewDNS returns a responder for name on router's state.
func NewDNS(router *Router, name string) *DNS {
	return &DNS{router: router, name: dns.Fqdn(strings.ToLower(name))}
}

// Serve answers on conn (UDP) until ctx ends.
func (d *DNS) Serve(ctx context.Context, conn net.PacketConn) error {
	srv := &dns.Server{PacketConn: conn, Handler: d}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err := srv.ShutdownContext(sctx)
		<-done
		if errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	}
}

// ServeDNS implements dns.Handler.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	if strings.ToLower(q.Name) != d.name {
		m.Rcode = dns.RcodeRefused // not our zone
		_ = w.WriteMsg(m)
		return
	}
	client := clientAddr(w, req)
	region, _ := d.router.Choose(client, "", false)
	if region == "" {
		m.Rcode = dns.RcodeServerFailure // no region can serve
		_ = w.WriteMsg(m)
		return
	}
	addr := d.router.regions[region].address()
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: DNSTTL}
	switch {
	case q.Qtype == dns.TypeA && addr.Is4():
		hdr.Rrtype = dns.TypeA
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: addr.AsSlice()})
	case q.Qtype == dns.TypeAAAA && addr.Is6():
		hdr.Rrtype = dns.TypeAAAA
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()})
	}
	_ = w.WriteMsg(m) // NOERROR with no answer for the other type
}

// clientAddr is the EDNS client subnet's address, else the query's source.
func clientAddr(w dns.ResponseWriter, req *dns.Msg) netip.Addr {
	if opt := req.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if s, ok := o.(*dns.EDNS0_SUBNET); ok {
				if a, ok := netip.AddrFromSlice(s.Address); ok {
					return a.Unmap()
				}
			}
		}
	}
	if ua, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		if a, ok := netip.AddrFromSlice(ua.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}
