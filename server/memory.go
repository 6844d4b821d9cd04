package server

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// The zones' heap input is the runtime's memory over GOMEMLIMIT. Two things made it keep
// the figure of a node's busiest moment long after the load had stopped (after a routed
// load of 4 KiB messages: 0.79 to 0.90 for 8 s and more, the admission zone RED, so a
// node with no connections refused new ones):
//
//   - free spans the runtime keeps and would hand out again before asking the system for
//     more (heap/free) were counted as used; they are not counted any more;
//   - dead objects count until a collection frees them, and a collection runs only when
//     the program allocates: an idle node keeps its garbage, and the buffers pooled in
//     sync.Pools, until the runtime's forced collection every 2 minutes. The sampler
//     therefore runs a collection itself (collectIdle) when the figure could hold a zone
//     above GREEN and none has completed for idleGCAfter.
//
// The second rule is about RSS rather than the zones: after a burst of traffic an idle
// node also kept tens of MiB of garbage far below any zone (a 3-node cluster after a
// routed load of 4 KiB or 64 KiB messages: 10–55 MiB of heap in use and 38–87 MiB RSS
// per node 25 s later), and RSS does not fall before a collection frees it and the
// runtime's scavenger gives the pages back. Which objects are dead only a collection can
// tell (what the last one found live may have died since), so once no collection has
// completed for idleGarbageAfter and the heap holds at least idleGarbageMin, the sampler
// collects; each of its collections that frees less than idleGarbageMin doubles the wait
// before the next (up to idleGarbageMaxWait), one that frees more resets it. Under load
// the runtime collects far more often than that by itself; an idle node whose heap is all
// live pays a mark of it at growing intervals.

// memNames are the runtime metrics read by memSample.read, in its order.
var memNames = [...]string{
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/free:bytes",
	"/gc/cycles/total:gc-cycles",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
}

// memSample reads the runtime's memory. Not safe for concurrent use: each reader has its own.
type memSample [len(memNames)]metrics.Sample

func newMemSample() memSample {
	var m memSample
	for i, n := range memNames {
		m[i].Name = n
	}
	return m
}

// memReading is one memSample.read.
type memReading struct {
	// used is what the runtime holds and could not hand out again without a collection:
	// everything mapped, less what was given back to the system and the free spans it
	// keeps.
	used   uint64
	cycles uint64 // collections completed
	// live is the heap the last collection found live; objects the heap's objects now,
	// live or dead: what exceeds live is (mostly) garbage.
	live, objects uint64
}

func (m *memSample) read() memReading {
	metrics.Read(m[:])
	total, released, free := m[0].Value.Uint64(), m[1].Value.Uint64(), m[2].Value.Uint64()
	r := memReading{cycles: m[3].Value.Uint64(), live: m[4].Value.Uint64(), objects: m[5].Value.Uint64()}
	if released+free < total {
		r.used = total - released - free
	}
	return r
}

const (
	// idleGCAfter is how long no collection must have completed before the sampler runs
	// one: under load the runtime collects far more often than this by itself.
	idleGCAfter = time.Second
	// idleGCEvery spaces the sampler's collections: if the memory is really in use, each
	// one costs a mark of it and frees nothing.
	idleGCEvery = 2 * time.Second
	// idleGarbageAfter and idleGarbageMin: the garbage rule (above). A collection at most
	// every idleGarbageAfter costs a node a mark of its live heap (tens of MiB: a few
	// ms of one core).
	idleGarbageAfter   = 10 * time.Second
	idleGarbageMin     = 8 << 20
	idleGarbageMaxWait = 2 * time.Minute // the runtime's own forced collection's period
)

// idleGC is the sampler's collection of an idle node's garbage (collectIdle).
type idleGC struct {
	cycles   uint64 // collections completed when last seen
	cyclesAt int64  // when that count was first seen
	ranAt    int64  // when the sampler last started one
	running  atomic.Bool
	wg       sync.WaitGroup // Shutdown waits for a collection still running
	count    atomic.Uint64  // collections the sampler started (switchboard_idle_collections_total)
	// garbageAfter is idleGarbageAfter (atomic: tests shorten it on a running server).
	garbageAfter atomic.Int64
	// wait is how long after its last collection the sampler may start the next by the
	// garbage rule (0: garbageAfter); its collection sets it.
	wait atomic.Int64
}

// collectIdle runs a collection in the background when no collection has completed for
// a while and either rule holds: the heap input util is at a level where it can hold a
// zone above GREEN (the yellow threshold less the hysteresis; after idleGCAfter, at most
// every idleGCEvery), or the heap holds idleGarbageMin (after idleGarbageAfter, at most
// every wait). On the sampler.
func (s *Server) collectIdle(now int64, util float64, r memReading) {
	g := &s.g.idle
	if r.cycles != g.cycles || g.cyclesAt == 0 {
		g.cycles, g.cyclesAt = r.cycles, now
		return
	}
	quiet, since := now-g.cyclesAt, now-g.ranAt
	th := s.g.traffic.Thresholds()
	byZone := th.Yellow > 0 && util >= th.Yellow-th.Hysteresis && quiet >= int64(idleGCAfter) &&
		(g.ranAt == 0 || since >= int64(idleGCEvery))
	after := g.garbageAfter.Load()
	if after == 0 {
		after = int64(idleGarbageAfter)
	}
	wait := max(g.wait.Load(), after)
	byGarbage := r.objects >= idleGarbageMin && quiet >= after && (g.ranAt == 0 || since >= wait)
	if (!byZone && !byGarbage) || !g.running.CompareAndSwap(false, true) {
		return
	}
	g.ranAt = now
	g.count.Add(1)
	g.wg.Add(1)
	before := r.objects
	go func() {
		defer g.wg.Done()
		defer g.running.Store(false)
		runtime.GC()
		live := [1]metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(live[:])
		if freed := before - min(live[0].Value.Uint64(), before); freed < idleGarbageMin {
			g.wait.Store(min(2*wait, int64(idleGarbageMaxWait)))
		} else {
			g.wait.Store(after)
		}
	}()
}
