package server

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/proxyproto"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/limits"
)

// proxied is a server that trusts 127.0.0.1 to send PROXY headers, one connection per
// client address.
func proxied(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.ProxyProtocolFrom = "192.0.2.0/24, 127.0.0.1"
	cfg.Config = limits.Config{MaxConnsPerIP: 1}
	return startServer(t, cfg)
}

// v6 maps an IPv4 address to an IPv6 one in a /64 of its own (per-IP counts IPv6 per /64).
func v6(src string) netip.AddrPort {
	a := netip.MustParseAddr(src).As4()
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, a[0], a[1], a[2], a[3], 15: 1}), 5000)
}

func hello(name string) []byte { return codec.AppendHello(nil, 1, codec.Version, name, "") }

var (
	proxyDst4 = netip.MustParseAddrPort("192.0.2.1:7400")
	proxyDst6 = netip.MustParseAddrPort("[2001:db8::1]:7400")
)

// TestProxyHeader checks each kind of header, sent in the same write as the HELLO: the
// connection is welcomed (no byte after the header was lost), and the per-IP limit counts
// the header's source (one connection per client address), or the proxy's own address
// for LOCAL and UNKNOWN.
func TestProxyHeader(t *testing.T) {
	tlv := []byte{0x04, 0x00, 0x03, 'x', 'y', 'z'} // PP2_TYPE_NOOP
	for _, tt := range []struct {
		name string
		hdr  func(src string) []byte // src "": the variant without a source
		own  bool                    // counted as the proxy's own connection
	}{
		{"v1 TCP4", func(src string) []byte {
			return proxyproto.AppendV1(nil, netip.MustParseAddrPort(src+":5000"), proxyDst4)
		}, false},
		{"v1 TCP6", func(src string) []byte {
			return proxyproto.AppendV1(nil, v6(src), proxyDst6)
		}, false},
		{"v2 TCP4", func(src string) []byte {
			return proxyproto.AppendV2(nil, proxyproto.Proxy, netip.MustParseAddrPort(src+":5000"), proxyDst4, nil)
		}, false},
		{"v2 TCP6", func(src string) []byte {
			return proxyproto.AppendV2(nil, proxyproto.Proxy, v6(src), proxyDst6, nil)
		}, false},
		{"v2 TCP4 with TLV", func(src string) []byte {
			return proxyproto.AppendV2(nil, proxyproto.Proxy, netip.MustParseAddrPort(src+":5000"), proxyDst4, tlv)
		}, false},
		{"v2 LOCAL", func(string) []byte {
			return proxyproto.AppendV2(nil, proxyproto.Local, netip.AddrPort{}, netip.AddrPort{}, nil)
		}, true},
		{"v1 UNKNOWN", func(string) []byte { return []byte("PROXY UNKNOWN\r\n") }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := proxied(t, Config{})
			a := rawpeer.Dial(t, s.Addr().String())
			a.Write(append(tt.hdr("203.0.113.7"), hello("a")...))
			a.Expect(codec.TypeWelcome)

			b := rawpeer.Dial(t, s.Addr().String())
			b.Write(append(tt.hdr("203.0.113.7"), hello("b")...))
			if _, e := b.ExpectError(codec.CodeBusy); e.Reason != "too many connections from this address" {
				t.Fatalf("second connection from one address: reason %q", e.Reason)
			}
			if tt.own {
				return // both came from the proxy's own address
			}
			c := rawpeer.Dial(t, s.Addr().String())
			c.Write(append(tt.hdr("203.0.113.8"), hello("c")...))
			c.Expect(codec.TypeWelcome)
			if n := refusedBy(s, "per_ip"); n != 1 {
				t.Fatalf("per_ip refusals %d; want 1", n)
			}
		})
	}
}

// TestProxyHeaderSplit sends a header one byte per write, then HELLO and ECHO together:
// the reader waits for the whole header and leaves the frames to the loop.
func TestProxyHeaderSplit(t *testing.T) {
	s := proxied(t, Config{})
	for _, hdr := range [][]byte{
		proxyproto.AppendV1(nil, netip.MustParseAddrPort("203.0.113.7:5000"), proxyDst4),
		proxyproto.AppendV2(nil, proxyproto.Proxy, netip.MustParseAddrPort("203.0.113.8:5000"), proxyDst4, []byte{4, 0, 1, 0}),
	} {
		p := rawpeer.Dial(t, s.Addr().String())
		for i := range hdr {
			p.Write(hdr[i : i+1])
			time.Sleep(time.Millisecond) // separate segments
		}
		p.Write(append(hello("split"), codec.AppendFrame(nil, codec.TypeEcho, 0, 7, []byte("hi"))...))
		p.Expect(codec.TypeWelcome)
		if f := p.Expect(codec.TypeEchoReply); f.Corr != 7 || string(f.Body) != "hi" {
			t.Fatalf("echo reply corr %d body %q", f.Corr, f.Body)
		}
	}
}

// TestProxyHeaderRequired: a trusted proxy's connection without a header is refused,
// whatever it sends instead.
func TestProxyHeaderRequired(t *testing.T) {
	s := proxied(t, Config{})
	for _, tt := range []struct {
		name, send, reason string
	}{
		{"HELLO", string(hello("x")), "PROXY protocol header required from this address"},
		{"bad v1", "PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", `proxyproto: invalid header: version 1: bad port "99999"`},
		{"v1 without CRLF", "PROXY TCP4 " + strings.Repeat("9", 200), "proxyproto: invalid header: version 1 header without CRLF in 107 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := rawpeer.Dial(t, s.Addr().String())
			p.Write([]byte(tt.send))
			if _, e := p.ExpectError(codec.CodeBadFrame); e.Reason != tt.reason {
				t.Fatalf("reason %q; want %q", e.Reason, tt.reason)
			}
			p.ExpectClosed()
		})
	}
	if n := refusedBy(s, "proxy_header"); n != 3 {
		t.Fatalf("proxy_header refusals %d; want 3", n)
	}
	if n := s.Stats().Connections; n != 0 {
		t.Fatalf("%d connections counted; want 0", n)
	}
}

// TestProxyHeaderUntrusted: a PROXY header from an address that is not trusted (or with
// the feature off) is refused as what it is, not as a frame too large.
func TestProxyHeaderUntrusted(t *testing.T) {
	for _, from := range []string{"", "192.0.2.0/24"} {
		s := startServer(t, Config{ProxyProtocolFrom: from})
		for _, hdr := range [][]byte{
			proxyproto.AppendV1(nil, netip.MustParseAddrPort("203.0.113.7:5000"), proxyDst4),
			proxyproto.AppendV2(nil, proxyproto.Proxy, netip.MustParseAddrPort("203.0.113.7:5000"), proxyDst4, nil),
		} {
			p := rawpeer.Dial(t, s.Addr().String())
			p.Write(append(hdr, hello("x")...))
			if _, e := p.ExpectError(codec.CodeBadFrame); e.Reason != unexpectedProxyReason {
				t.Fatalf("proxy-protocol-from %q, header %q: reason %q", from, hdr[:6], e.Reason)
			}
			p.ExpectClosed()
		}
		connect(t, s, "plain") // a client without a header is served as usual
	}
}

// TestProxyHeaderSlowDoesNotStall: connections from the proxy that send half a header, or
// nothing, hold up no other connection, and are refused when the handshake timeout
// passes.
func TestProxyHeaderSlowDoesNotStall(t *testing.T) {
	const timeout = 5 * time.Second // long beside four handshakes, even on a loaded machine
	s := proxied(t, Config{HandshakeTimeout: timeout})
	var slow []*rawpeer.Peer
	for i := range 8 {
		p := rawpeer.Dial(t, s.Addr().String())
		if i%2 == 0 {
			p.Write([]byte("PROXY TCP4 203.0.11"))
		} else {
			p.Write([]byte("\r\n\r\n\x00\r\nQU"))
		}
		slow = append(slow, p)
	}
	start := time.Now()
	for i := range 4 {
		p := rawpeer.Dial(t, s.Addr().String())
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)}), 5000)
		p.Write(append(proxyproto.AppendV2(nil, proxyproto.Proxy, src, proxyDst4, nil), hello("fast")...))
		p.Expect(codec.TypeWelcome)
	}
	if d := time.Since(start); d >= timeout {
		t.Fatalf("fast connections took %v, as long as the slow headers' timeout", d)
	}
	for _, p := range slow {
		if _, e := p.ExpectError(codec.CodeHandshakeTimeout); e.Reason != "no PROXY protocol header in time" {
			t.Fatalf("reason %q", e.Reason)
		}
	}
	waitFor(t, "connections counted", func() bool { return s.Stats().Connections == 4 })
}

// TestProxyHeaderShutdown: Shutdown does not wait out the header reads in progress.
func TestProxyHeaderShutdown(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0", Loops: 1, ProxyProtocolFrom: "127.0.0.1",
		HandshakeTimeout: time.Minute, LoopLagBudget: time.Hour}, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	p := rawpeer.Dial(t, s.Addr().String())
	p.Write([]byte("PROXY "))
	waitFor(t, "header read pending", func() bool {
		s.hdr.mu.Lock()
		defer s.hdr.mu.Unlock()
		return len(s.hdr.pending) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	p.ExpectError(codec.CodeShuttingDown)
}

func TestParseProxyFrom(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string // prefixes joined by spaces, or "error"
	}{
		{"", ""},
		{" , ", ""},
		{"127.0.0.1", "127.0.0.1/32"},
		{"10.1.2.3/8, ::1 ,2001:db8::/32", "10.0.0.0/8 ::1/128 2001:db8::/32"},
		{"::ffff:10.0.0.1", "10.0.0.1/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"10.0.0.300", "error"},
		{"fe80::1%eth0", "error"},
		{"10.0.0.0/33", "error"},
		{"proxy.example", "error"},
	} {
		got, err := parseProxyFrom(tt.in)
		if tt.want == "error" {
			if err == nil {
				t.Errorf("parseProxyFrom(%q) = %v; want an error", tt.in, got)
			}
			continue
		}
		var parts []string
		for _, p := range got {
			parts = append(parts, p.String())
		}
		if err != nil || strings.Join(parts, " ") != tt.want {
			t.Errorf("parseProxyFrom(%q) = %q, %v; want %q", tt.in, strings.Join(parts, " "), err, tt.want)
		}
	}
	c := DefaultConfig()
	c.ProxyProtocolFrom = "10.0.0.1, nonsense"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `proxy-protocol-from: "nonsense" is not an address or CIDR prefix`) {
		t.Errorf("Validate: %v", err)
	}
}
