package limits

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
)

func TestPerIP(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	aMapped := netip.MustParseAddr("::ffff:192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	v6a := netip.MustParseAddr("2001:db8:1:2::1")
	v6b := netip.MustParseAddr("2001:db8:1:2:ffff::9") // same /64
	v6c := netip.MustParseAddr("2001:db8:1:3::1")      // other /64
	type op struct {
		release bool
		ip      netip.Addr
		want    bool // for acquire
	}
	tests := []struct {
		name    string
		max     int
		ops     []op
		wantLen int
	}{
		{"up-to-max", 2, []op{{false, a, true}, {false, a, true}, {false, a, false}, {false, b, true}}, 2},
		{"release-frees", 1, []op{{false, a, true}, {false, a, false}, {true, a, false}, {false, a, true}}, 1},
		{"mapped-is-v4", 1, []op{{false, a, true}, {false, aMapped, false}, {true, aMapped, false}}, 0},
		{"v6-per-64", 2, []op{{false, v6a, true}, {false, v6b, true}, {false, v6a, false}, {false, v6c, true}}, 2},
		{"v6-zone-ignored", 1, []op{{false, v6a.WithZone("eth0"), true}, {false, v6a, false}}, 1},
		{"invalid-not-limited", 1, []op{{false, netip.Addr{}, true}, {false, netip.Addr{}, true}}, 0},
		{"release-unknown-noop", 1, []op{{true, a, false}, {true, a, false}, {false, a, true}}, 1},
		{"unlimited", 0, []op{{false, a, true}, {false, a, true}, {false, a, true}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPerIP(tt.max)
			for i, o := range tt.ops {
				if o.release {
					p.Release(o.ip)
					continue
				}
				if got := p.Acquire(o.ip); got != o.want {
					t.Fatalf("op %d: Acquire(%v) = %v; want %v", i, o.ip, got, o.want)
				}
			}
			if p.Len() != tt.wantLen {
				t.Errorf("Len = %d; want %d", p.Len(), tt.wantLen)
			}
		})
	}
}

func TestPerIPConcurrentFreesAll(t *testing.T) {
	p := NewPerIP(8)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5000 {
				ip := netip.AddrFrom4([4]byte{10, byte(g), byte(i % 50), 1})
				if p.Acquire(ip) {
					if c := p.Count(ip); c < 1 || c > 8 {
						t.Errorf("Count(%v) = %d; want 1..8", ip, c)
					}
					p.Release(ip)
				}
			}
		})
	}
	wg.Wait()
	if p.Len() != 0 {
		t.Errorf("Len after all released = %d; want 0", p.Len())
	}
	for i := range p.shards {
		if n := len(p.shards[i].m); n != 0 {
			t.Errorf("shard %d holds %d entries; want 0", i, n)
		}
	}
}

func TestPerIPSpreadsOverShards(t *testing.T) {
	p := NewPerIP(1)
	for i := range 1600 {
		p.Acquire(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	for i := range p.shards {
		if n := len(p.shards[i].m); n < 50 || n > 150 {
			t.Errorf("shard %d holds %d of 1600 sequential addresses; want about 100", i, n)
		}
	}
}

func TestPerIPNoAllocs(t *testing.T) {
	p := NewPerIP(4)
	ips := make([]netip.Addr, 64)
	for i := range ips {
		ips[i] = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1))
	}
	for _, ip := range ips { // grow the maps
		p.Acquire(ip)
		p.Release(ip)
	}
	i := 0
	if a := testing.AllocsPerRun(1000, func() {
		ip := ips[i%len(ips)]
		i++
		p.Acquire(ip)
		p.Release(ip)
	}); a != 0 {
		t.Errorf("Acquire+Release: %v allocs per run; want 0", a)
	}
}

func TestPerIPCounterSetMax(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	p := NewPerIPCounter(0)
	for range 3 {
		if !p.Acquire(a) {
			t.Fatal("unlimited counter refused")
		}
	}
	if p.Count(a) != 3 {
		t.Fatalf("count %d; want 3 while unlimited", p.Count(a))
	}
	p.SetMax(3)
	if p.Acquire(a) {
		t.Fatal("4th connection admitted after SetMax(3)")
	}
	p.Release(a)
	if !p.Acquire(a) {
		t.Fatal("refused after a release")
	}
	p.SetMax(0)
	if !p.Acquire(a) || p.Max() != 0 {
		t.Fatal("SetMax(0) did not lift the limit")
	}
}
