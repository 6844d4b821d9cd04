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

// memNames are the runtime metrics read by memSample.read, in its order.
var memNames = [...]string{
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/free:bytes",
	"/gc/cycles/total:gc-cycles",
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

// read returns the bytes the runtime holds and could not hand out again without a
// collection (everything mapped, less what was given back to the system and the free
// spans it keeps), and how many collections have completed.
func (m *memSample) read() (used, cycles uint64) {
	metrics.Read(m[:])
	total, released, free := m[0].Value.Uint64(), m[1].Value.Uint64(), m[2].Value.Uint64()
	if released+free < total {
		used = total - released - free
	}
	return used, m[3].Value.Uint64()
}

const (
	// idleGCAfter is how long no collection must have completed before the sampler runs
	// one: under load the runtime collects far more often than this by itself.
	idleGCAfter = time.Second
	// idleGCEvery spaces the sampler's collections: if the memory is really in use, each
	// one costs a mark of it and frees nothing.
	idleGCEvery = 2 * time.Second
)

// idleGC is the sampler's collection of an idle node's garbage (collectIdle).
type idleGC struct {
	cycles   uint64 // collections completed when last seen
	cyclesAt int64  // when that count was first seen
	ranAt    int64  // when the sampler last started one
	running  atomic.Bool
	wg       sync.WaitGroup // Shutdown waits for a collection still running
	count    atomic.Uint64  // collections the sampler started (switchboard_idle_collections_total)
}

// collectIdle runs a collection in the background when the heap input util is at a level
// where it can hold a zone above GREEN (the yellow threshold less the hysteresis), no
// collection has completed for idleGCAfter and the sampler has not started one for
// idleGCEvery. On the ticker goroutine (sample).
func (s *Server) collectIdle(now int64, util float64, cycles uint64) {
	g := &s.g.idle
	if cycles != g.cycles || g.cyclesAt == 0 {
		g.cycles, g.cyclesAt = cycles, now
		return
	}
	th := s.g.traffic.Thresholds()
	if th.Yellow <= 0 || util < th.Yellow-th.Hysteresis ||
		now-g.cyclesAt < int64(idleGCAfter) || g.ranAt != 0 && now-g.ranAt < int64(idleGCEvery) ||
		!g.running.CompareAndSwap(false, true) {
		return
	}
	g.ranAt = now
	g.count.Add(1)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer g.running.Store(false)
		runtime.GC()
	}()
}
