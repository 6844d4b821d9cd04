package server

import (
	"testing"

	"github.com/switchboard/switchboard/shard"
)

func TestWheel(t *testing.T) {
	w := newWheel(8)
	var fired []uint64
	fire := func(e timerEntry) { fired = append(fired, uint64(e.id)) }
	w.add(1, timerSlow, 1)
	w.add(3, timerSlow, 3)
	w.add(8, timerSlow, 8)   // exactly one lap
	w.add(20, timerSlow, 20) // two laps and more
	w.add(0, timerSlow, 100) // zero means next tick
	w.advanceTo(1, fire)
	if len(fired) != 2 {
		t.Fatalf("after tick 1 fired %v; want [1 100]", fired)
	}
	w.advanceTo(8, fire)
	if got := fired[len(fired)-2:]; got[0] != 3 || got[1] != 8 {
		t.Fatalf("after tick 8 fired %v; want ... 3 8", fired)
	}
	w.advanceTo(19, fire)
	if len(fired) != 4 {
		t.Fatalf("fired early: %v", fired)
	}
	w.advanceTo(20, fire)
	if len(fired) != 5 || fired[4] != 20 {
		t.Fatalf("after tick 20 fired %v; want 20 last", fired)
	}
}

func TestWheelRearmFromFire(t *testing.T) {
	w := newWheel(4)
	count := 0
	fire := func(e timerEntry) {
		count++
		if count < 5 {
			w.add(4, e.kind, e.id) // same slot, one lap later
		}
	}
	w.add(4, timerSlow, shard.ConnID(7))
	for tick := uint64(1); tick <= 100; tick++ {
		w.advanceTo(tick, fire)
	}
	if count != 5 {
		t.Fatalf("re-armed timer fired %d times; want 5", count)
	}
}

func TestWheelLongStall(t *testing.T) {
	w := newWheel(4)
	n := 0
	for i := uint64(1); i <= 10; i++ {
		w.add(i, timerRequest, shard.ConnID(i))
	}
	w.advanceTo(1000, func(timerEntry) { n++ })
	if n != 10 {
		t.Fatalf("after a stall %d of 10 timers fired", n)
	}
}

func TestWheelNoAllocs(t *testing.T) {
	w := newWheel(64)
	for i := 0; i < 64; i++ {
		w.add(uint64(i%8)+1, timerSlow, shard.ConnID(i))
	}
	w.advanceTo(100, func(timerEntry) {})
	allocs := testing.AllocsPerRun(100, func() {
		w.add(3, timerSlow, 1)
		w.advanceTo(w.now+3, func(timerEntry) {})
	})
	if allocs != 0 {
		t.Fatalf("wheel steady state allocs = %v; want 0", allocs)
	}
}

func TestWheelCancel(t *testing.T) {
	w := newWheel(8)
	var fired []uint64
	fire := func(e timerEntry) { fired = append(fired, uint64(e.id)) }
	a := w.add(2, timerRequest, 1)
	w.add(2, timerRequest, 2)
	c := w.add(2, timerRequest, 3)
	w.cancel(a)
	w.cancel(c)
	w.cancel(c) // twice: ignored
	w.advanceTo(2, fire)
	if len(fired) != 1 || fired[0] != 2 {
		t.Fatalf("fired %v; want [2]", fired)
	}
	w.cancel(a) // after its node was reused? no: still ignored by generation
	d := w.add(1, timerRequest, 4)
	w.cancel(a) // a's node may now be d's: the generation keeps d armed
	w.advanceTo(3, fire)
	if len(fired) != 2 || fired[1] != 4 {
		t.Fatalf("fired %v; want [2 4]", fired)
	}
	_ = d
	if w.live != 0 {
		t.Fatalf("%d timers live; want 0", w.live)
	}
}

// TestWheelMemoryFollowsLiveTimers arms and cancels a million request timers with a long
// timeout: the node slice stays at the peak of live timers.
func TestWheelMemoryFollowsLiveTimers(t *testing.T) {
	w := newWheel(1024)
	var inflight []timerHandle
	for i := 0; i < 1_000_000; i++ {
		inflight = append(inflight, w.add(100, timerRequest, shard.ConnID(i)))
		if len(inflight) == 64 {
			for _, h := range inflight {
				w.cancel(h)
			}
			inflight = inflight[:0]
		}
		if i%1000 == 0 {
			w.advanceTo(w.now+1, func(timerEntry) { t.Fatal("cancelled timer fired") })
		}
	}
	if len(w.nodes) > 64 {
		t.Fatalf("%d timer nodes for at most 64 live timers", len(w.nodes))
	}
}

func TestWheelFireCancelsNext(t *testing.T) {
	w := newWheel(4)
	var hs []timerHandle
	n := 0
	for i := 0; i < 5; i++ {
		hs = append(hs, w.add(4, timerRequest, shard.ConnID(i)))
	}
	w.advanceTo(4, func(e timerEntry) {
		n++
		for _, h := range hs { // the first to fire cancels all the others
			w.cancel(h)
		}
	})
	if n != 1 || w.live != 0 {
		t.Fatalf("fired %d, %d live; want 1, 0", n, w.live)
	}
}
