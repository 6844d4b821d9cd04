package limits

import (
	"net/netip"
	"testing"
	"time"
)

func TestAuthFailuresBlocksAfterRate(t *testing.T) {
	a := NewAuthFailures(5, 0)
	ip := netip.MustParseAddr("10.0.0.1")
	other := netip.MustParseAddr("10.0.0.2")
	now := int64(time.Second)
	for i := range 5 {
		if d := a.Blocked(ip, now); d != 0 {
			t.Fatalf("failure %d: blocked for %v before the burst was spent", i, d)
		}
		a.Fail(ip, now)
	}
	d := a.Blocked(ip, now)
	if d <= 0 || d > 200*time.Millisecond {
		t.Fatalf("after 5 failures at 5/s: blocked for %v; want (0, 200ms]", d)
	}
	if d := a.Blocked(other, now); d != 0 {
		t.Fatalf("another address blocked for %v; want 0", d)
	}
	// More failures while blocked keep it blocked but do not push it into debt.
	a.Fail(ip, now)
	if got := a.Blocked(ip, now+int64(d)); got != 0 {
		t.Fatalf("after retry-after %v: still blocked for %v", d, got)
	}
	// IPv6 counts per /64.
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	for range 5 {
		a.Fail(v6a, now)
	}
	if a.Blocked(v6b, now) == 0 {
		t.Fatal("a neighbour in the same /64 is not blocked")
	}
	if a.Blocked(netip.Addr{}, now) != 0 {
		t.Fatal("the invalid address is limited")
	}
}

func TestAuthFailuresBounded(t *testing.T) {
	a := NewAuthFailures(1, 64)
	now := int64(time.Second)
	for i := range 10_000 {
		a.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	if n := a.Len(); n > 64 {
		t.Fatalf("tracking %d addresses; want at most 64", n)
	}
	n := 0
	for i := range a.shards {
		n += len(a.shards[i].m)
	}
	if n != a.Len() {
		t.Fatalf("Len %d; the shards hold %d", a.Len(), n)
	}
}

func TestAuthFailuresOff(t *testing.T) {
	var a *AuthFailures = NewAuthFailures(0, 0)
	ip := netip.MustParseAddr("10.0.0.1")
	for range 100 {
		a.Fail(ip, 0)
	}
	if a.Blocked(ip, 0) != 0 || a.Len() != 0 || a.Rate() != 0 {
		t.Fatal("a limiter with rate 0 limits")
	}
}
