package server

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/switchboard/switchboard/limits"
)

// TestIdleGarbageCollected: after a burst, an idle node's heap input falls back, so that
// its zones do not keep refusing. The test holds memory live until the heap input is past
// the yellow threshold, then drops it and allocates nothing: the runtime would not collect
// it for 2 minutes, and before, the freed spans it keeps counted as used even after a
// collection (with no connection, the admission zone stayed RED for 8 s and more after a
// routed load of 4 KiB messages). The sampler now collects an idle node's garbage, and
// free spans do not count.
func TestIdleGarbageCollected(t *testing.T) {
	s := startServer(t, withLimits(Config{TickInterval: 10 * time.Millisecond}, limits.Config{}))
	runtime.GC() // what earlier tests left is not counted in before
	before := newMemSampleRead().used
	limit := int64(before) + 256<<20
	prev := debug.SetMemoryLimit(limit)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	th := limits.DefaultThresholds()

	heap := func() float64 { return s.g.zone.Snapshot(s.clock()).Inputs.Heap }
	var collections uint64
	func() {
		ballast := make([][]byte, 0, 192)
		for range 192 { // 192 MiB of 256 MiB over what the process used: 0.75 at least
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1 // resident, not only reserved
			}
			ballast = append(ballast, b)
		}
		waitFor(t, "the heap input past yellow", func() bool { return heap() >= th.Yellow })
		collections = s.g.idle.count.Load()
		runtime.KeepAlive(ballast) // garbage from here on
	}()
	waitFor(t, "the heap input below yellow less the hysteresis", func() bool {
		return heap() < th.Yellow-th.Hysteresis
	})
	if s.g.idle.count.Load() == collections {
		t.Errorf("the heap input fell without a collection by the sampler")
	}
}

// newMemSampleRead reads the memory measure once.
func newMemSampleRead() memReading {
	m := newMemSample()
	return m.read()
}

// TestIdleGarbageRule: an idle node with garbage far below any zone still collects it
// once none has completed for garbageAfter (idleGarbageAfter, shortened here), so that
// its RSS can fall; with a heap under idleGarbageMin it does not. Automatic collection is
// off for the test (GOGC off, no memory limit), so only the sampler's collections free
// anything.
func TestIdleGarbageRule(t *testing.T) {
	s := startServer(t, withLimits(Config{TickInterval: 10 * time.Millisecond}, limits.Config{}))
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	prevGC := debug.SetGCPercent(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(prevGC)
		debug.SetMemoryLimit(prevLimit)
		runtime.GC() // the next test starts with no garbage of this one
	})
	const after = 200 * time.Millisecond
	s.g.idle.garbageAfter.Store(int64(after))
	runtime.GC()
	if r := newMemSampleRead(); r.objects >= idleGarbageMin {
		t.Skipf("the test binary's heap is %d bytes after a collection: nothing to show below %d", r.objects, idleGarbageMin)
	}

	// A small heap: three intervals pass without a collection by the sampler.
	count := s.g.idle.count.Load()
	time.Sleep(3 * after)
	if got := s.g.idle.count.Load(); got != count {
		t.Fatalf("the sampler collected %d times with a heap of %d bytes; want none below %d",
			got-count, newMemSampleRead().objects, idleGarbageMin)
	}

	// 64 MiB of garbage: collected. The sampler may start while it is made, and find it
	// live: then it tries again after a longer wait.
	func() {
		junk := make([][]byte, 0, 64)
		for range 64 {
			junk = append(junk, make([]byte, 1<<20))
		}
		runtime.KeepAlive(junk)
	}()
	waitFor(t, "the sampler to collect the garbage", func() bool {
		return s.g.idle.count.Load() > count && newMemSampleRead().objects < 32<<20
	})
}
