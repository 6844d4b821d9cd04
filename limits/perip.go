package limits

import (
	"encoding/binary"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
)

// perIPShards is the number of independently locked parts of a PerIP.
const perIPShards = 16

// PerIP counts live connections per client address and refuses one above a maximum: the
// per-IP part of tier 1.
//
// Addresses are grouped the way one client holds them: an IPv4-mapped IPv6 address counts
// as its IPv4 address, and IPv6 addresses count per /64 prefix (one host or one customer
// network usually owns a whole /64, so counting single IPv6 addresses would not limit
// anyone). The invalid (zero) netip.Addr, for a connection without an IP address, is not
// limited or counted.
//
// An entry is deleted when its count returns to zero, so memory is bounded by the number
// of distinct addresses with live connections.
//
// Concurrency: safe for concurrent use (the acceptor acquires, event loops release on
// close). Addresses are spread over 16 shards, each with its own mutex held for one map
// operation. Acquire and Release do not allocate except when a shard's map grows.
//
// A PerIP from NewPerIP with max <= 0 is unlimited and counts nothing. One from
// NewPerIPCounter always counts, so that its maximum can be changed at run time (SetMax)
// without losing track of the connections already open.
type PerIP struct {
	max      atomic.Int32 // atomic; 0 means unlimited
	counting bool         // immutable after construction
	n        atomic.Int64 // atomic; entries across shards
	shards   [perIPShards]ipShard
}

type ipShard struct {
	mu sync.Mutex
	m  map[netip.Addr]int32 // guarded by mu
	_  [cacheLine - 16]byte
}

// NewPerIP returns a PerIP allowing at most maxPerIP concurrent connections per address
// (maxPerIP <= 0: unlimited).
func NewPerIP(maxPerIP int) *PerIP {
	if maxPerIP <= 0 {
		return &PerIP{}
	}
	return NewPerIPCounter(maxPerIP)
}

// NewPerIPCounter returns a PerIP that counts every address even while unlimited
// (maxPerIP <= 0), so that SetMax can impose a limit later.
func NewPerIPCounter(maxPerIP int) *PerIP {
	p := &PerIP{counting: true}
	p.SetMax(maxPerIP)
	for i := range p.shards {
		p.shards[i].m = make(map[netip.Addr]int32)
	}
	return p
}

// SetMax changes the per-address maximum (<= 0: unlimited). It has an effect only on a
// PerIP that counts (NewPerIPCounter, or NewPerIP with a maximum); addresses already over
// a new, lower maximum keep their connections and are refused new ones. Safe for
// concurrent use.
func (p *PerIP) SetMax(maxPerIP int) {
	p.max.Store(int32(min(max(maxPerIP, 0), math.MaxInt32)))
}

// Max returns the per-address maximum; 0 means unlimited.
func (p *PerIP) Max() int { return int(p.max.Load()) }

// Len returns the number of addresses (or IPv6 /64s) with live connections. Lock-free;
// approximate while Acquire and Release run.
func (p *PerIP) Len() int { return int(p.n.Load()) }

// key returns the address ip is counted under, and false if ip is not counted.
func perIPKey(ip netip.Addr) (netip.Addr, bool) {
	if !ip.IsValid() {
		return ip, false
	}
	ip = ip.Unmap()
	if ip.Is6() {
		pfx, _ := ip.WithZone("").Prefix(64) // cannot fail for a valid IPv6 address
		ip = pfx.Addr()
	}
	return ip, true
}

func (p *PerIP) shard(ip netip.Addr) *ipShard { return &p.shards[ipShardIndex(ip)] }

// ipShardIndex spreads addresses over perIPShards shards.
func ipShardIndex(ip netip.Addr) int {
	a := ip.As16()
	x := binary.LittleEndian.Uint64(a[:8]) ^ binary.LittleEndian.Uint64(a[8:])*0xff51afd7ed558ccd
	return int((x * 0x9E3779B97F4A7C15) >> 60)
}

// Acquire counts one more connection from ip and reports true, or reports false without
// counting if ip already has Max connections. Every true must be paired with one Release.
func (p *PerIP) Acquire(ip netip.Addr) bool {
	if !p.counting {
		return true
	}
	k, ok := perIPKey(ip)
	if !ok {
		return true
	}
	sh := p.shard(k)
	sh.mu.Lock()
	c := sh.m[k]
	if m := p.max.Load(); m > 0 && c >= m {
		sh.mu.Unlock()
		return false
	}
	sh.m[k] = c + 1
	sh.mu.Unlock()
	if c == 0 {
		p.n.Add(1)
	}
	return true
}

// Release counts one connection from ip as closed. Releasing an address with no count is
// a no-op (so a double close cannot drive a count negative).
func (p *PerIP) Release(ip netip.Addr) {
	if !p.counting {
		return
	}
	k, ok := perIPKey(ip)
	if !ok {
		return
	}
	sh := p.shard(k)
	sh.mu.Lock()
	c := sh.m[k]
	switch {
	case c > 1:
		sh.m[k] = c - 1
	case c == 1:
		delete(sh.m, k)
	}
	sh.mu.Unlock()
	if c == 1 {
		p.n.Add(-1)
	}
}

// Count returns ip's live connections as counted (0 if unlimited).
func (p *PerIP) Count(ip netip.Addr) int {
	if !p.counting {
		return 0
	}
	k, ok := perIPKey(ip)
	if !ok {
		return 0
	}
	sh := p.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return int(sh.m[k])
}
