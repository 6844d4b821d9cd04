package server

import (
	"net/netip"
	"strings"
	"testing"
	"unsafe"

	"github.com/switchboard/switchboard/codec"
)

// TestConnSize keeps the per-connection state in its allocation size class: it is paid
// once per idle connection, 100K times per node.
func TestConnSize(t *testing.T) {
	if got := unsafe.Sizeof(conn{}); got > 112 {
		t.Fatalf("conn is %d bytes; keep it within the 112-byte size class", got)
	}
}

// TestConnTimerSize: every connection holds one connTimer (its handshake, then idle
// timer), in a slice indexed by its table slot.
func TestConnTimerSize(t *testing.T) {
	if got := unsafe.Sizeof(connTimer{}); got > 12 {
		t.Fatalf("connTimer is %d bytes; keep it within 12", got)
	}
}

// TestPeerIP: conn keeps its address as a peerIP; every address but a zone survives.
func TestPeerIP(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "192.0.2.7", "::1", "2001:db8::5", "::ffff:192.0.2.7", "fe80::1"} {
		want := netip.MustParseAddr(s)
		if got := peerIPOf(want).Addr(); got != want {
			t.Errorf("peerIPOf(%v).Addr() = %v; want %v", want, got, want)
		}
	}
	if got := peerIPOf(netip.Addr{}).Addr(); got.IsValid() {
		t.Errorf("peerIPOf(zero).Addr() = %v; want the zero Addr", got)
	}
	if got, want := peerIPOf(netip.MustParseAddr("fe80::1%eth0")).Addr(), netip.MustParseAddr("fe80::1"); got != want {
		t.Errorf("zone: got %v; want %v", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { _ = peerIPOf(netip.MustParseAddr("192.0.2.7")).Addr() }); n != 0 {
		t.Errorf("peerIP round trip: %v allocs; want 0", n)
	}
}

// TestConnName: conn keeps its HELLO name as bytes and a one-byte length; every legal
// name (a str8: up to 255 bytes) survives.
func TestConnName(t *testing.T) {
	for _, name := range []string{"", "a", "svc.orders", strings.Repeat("n", codec.MaxNameLen)} {
		var c conn
		c.setName(name)
		if got := c.name(); got != name {
			t.Errorf("name() = %q; want %q", got, name)
		}
		if n := testing.AllocsPerRun(100, func() { _ = c.name() }); n != 0 {
			t.Errorf("name(): %v allocs; want 0", n)
		}
	}
}
