package server

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/shard"
)

// fireLog records which slots fired at which tick.
type fireLog struct {
	t     *connTimers
	fired map[uint32]uint64
}

func (f *fireLog) fire(slot uint32) {
	if _, ok := f.fired[slot]; ok {
		panic("fired twice")
	}
	f.fired[slot] = f.t.now
}

func TestConnTimers(t *testing.T) {
	ct := newConnTimers(8)
	f := &fireLog{t: &ct, fired: map[uint32]uint64{}}
	want := map[uint32]uint64{0: 1, 3: 3, 5: 8, 9: 20, 2: 1, 7: 9}
	ct.set(0, 1)
	ct.set(3, 3)
	ct.set(5, 8)  // exactly one lap
	ct.set(9, 20) // two laps and more
	ct.set(2, 0)  // not after now: the next tick
	ct.set(7, 2)
	ct.set(7, 9) // moved
	ct.set(4, 5)
	ct.stop(4)
	ct.stop(4)  // stopped twice
	ct.stop(99) // never set
	if _, ok := ct.armed(4); ok {
		t.Fatal("slot 4 armed after stop")
	}
	if at, ok := ct.armed(9); !ok || at != 20 {
		t.Fatalf("armed(9) = %d, %v; want 20, true", at, ok)
	}
	for tick := uint64(1); tick <= 30; tick++ {
		ct.advanceTo(tick, f.fire)
		for s, at := range f.fired {
			if at > tick || at < want[s] {
				t.Fatalf("slot %d fired at tick %d; want %d", s, at, want[s])
			}
		}
	}
	if len(f.fired) != len(want) {
		t.Fatalf("fired %v; want %v", f.fired, want)
	}
	for s, at := range want {
		if f.fired[s] != at {
			t.Errorf("slot %d fired at tick %d; want %d", s, f.fired[s], at)
		}
	}
}

// TestConnTimersFromFire: a timer set again, or another stopped or set, from fire.
func TestConnTimersFromFire(t *testing.T) {
	ct := newConnTimers(4)
	var got []uint64
	n := 0
	ct.set(1, 2)
	ct.set(2, 2)
	ct.set(3, 2)
	ct.advanceTo(2, func(slot uint32) {
		got = append(got, uint64(slot))
		if slot == 3 || slot == 2 {
			ct.stop(1) // the other one still due this tick
			ct.stop(2)
		}
	})
	if len(got) != 1 {
		t.Fatalf("fired %v; want one of the three, the others stopped by it", got)
	}
	got = got[:0]
	ct.set(0, 3)
	fire := func(slot uint32) {
		n++
		got = append(got, ct.now)
		if n < 5 {
			ct.set(slot, ct.now+4) // same wheel slot, one lap later
		}
	}
	for tick := uint64(3); tick <= 100; tick++ {
		ct.advanceTo(tick, fire)
	}
	if want := []uint64{3, 7, 11, 15, 19}; !slices.Equal(got, want) {
		t.Fatalf("re-set timer fired at %v; want %v", got, want)
	}
}

func TestConnTimersLongStall(t *testing.T) {
	ct := newConnTimers(4)
	for i := uint32(0); i < 10; i++ {
		ct.set(i, uint64(i)+1)
	}
	ct.set(10, 2000)
	n := 0
	ct.advanceTo(1000, func(uint32) { n++ })
	if n != 10 {
		t.Fatalf("after a stall fired %d; want 10", n)
	}
	ct.advanceTo(1999, func(uint32) { n++ })
	if n != 10 {
		t.Fatalf("the timer for tick 2000 fired early")
	}
	ct.advanceTo(2000, func(uint32) { n++ })
	if n != 11 {
		t.Fatalf("the timer for tick 2000 did not fire at 2000")
	}
}

func TestConnTimersNoAllocs(t *testing.T) {
	ct := newConnTimers(64)
	ct.set(100, 1)
	tick := uint64(0)
	if n := testing.AllocsPerRun(100, func() {
		ct.set(7, ct.now+3)
		ct.set(8, ct.now+70)
		ct.stop(7)
		tick++
		ct.advanceTo(tick, func(uint32) {})
	}); n != 0 {
		t.Fatalf("%v allocs per set/stop/advance; want 0", n)
	}
}

// TestConnTimerFollowsConnection: a connection's timer is its handshake deadline until
// WELCOME, then its idle deadline, and it is stopped when the connection closes.
func TestConnTimerFollowsConnection(t *testing.T) {
	const tick = 50 * time.Millisecond
	s := startServer(t, Config{Loops: 1, TickInterval: tick, HandshakeTimeout: 10 * time.Second, IdleTimeout: time.Hour})
	lp := s.loopAt(0)
	onLoop := func(fn func()) {
		done := make(chan struct{})
		_ = lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error { fn(); close(done); return nil }))
		<-done
	}
	// timer reports the loop's connections and, for the last one, its timer's ticks ahead.
	var slot uint32
	timer := func() (n int, ahead int64, armed bool) {
		onLoop(func() {
			lp.conns.Range(func(id shard.ConnID, _ *conn) bool { n++; slot = id.Slot(); return true })
			if at, ok := lp.timers.armed(slot); ok {
				armed, ahead = true, int64(int32(at-uint32(lp.timers.now)))
			}
		})
		return n, ahead, armed
	}
	p := rawpeer.Dial(t, s.Addr().String())
	waitFor(t, "the connection on its loop", func() bool { n, _, _ := timer(); return n == 1 })
	// 10 s is 200 ticks; on a loaded machine the loop may be some ticks behind or the
	// test some ticks late.
	if _, ahead, armed := timer(); !armed || ahead < 100 || ahead > 300 {
		t.Fatalf("before HELLO: timer armed %v, %d ticks ahead; want the handshake's ~200", armed, ahead)
	}
	p.Hello("timed", "")
	if _, ahead, armed := timer(); !armed || ahead < 71800 || ahead > 72100 {
		t.Fatalf("after WELCOME: timer armed %v, %d ticks ahead; want the idle timeout's ~72000", armed, ahead)
	}
	_ = p.Conn.Close()
	waitFor(t, "the connection closed", func() bool { n, _, _ := timer(); return n == 0 })
	if _, _, armed := timer(); armed {
		t.Fatal("timer of a closed connection's slot still armed")
	}
}
