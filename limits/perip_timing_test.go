package limits

import (
	"net/netip"
	"sync/atomic"
	"testing"
)

// BenchmarkPerIPAcquireRelease measures one accept and one close from all GOMAXPROCS
// goroutines over 4096 addresses.
func BenchmarkPerIPAcquireRelease(b *testing.B) {
	p := NewPerIP(1 << 20)
	ips := make([]netip.Addr, 4096)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		p.Acquire(ips[i])
		p.Release(ips[i])
	}
	var seed atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(997))
		for pb.Next() {
			ip := ips[i%len(ips)]
			i++
			if !p.Acquire(ip) {
				b.Fatal("refused")
			}
			p.Release(ip)
		}
	})
}
