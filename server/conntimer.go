package server

// connTimers is the timing wheel of one event loop's connection timers: every connection
// has exactly one while it is open, its handshake timeout until WELCOME and then its idle
// timeout (none when the idle timeout is off). Owned by the loop.
//
// It is kept apart from the loop's general wheel (wheel.go) because every idle connection
// holds one: a timer is addressed by the connection's table slot, not by a handle kept in
// conn, and needs neither a ConnID nor a kind (what fires is decided by the connection's
// state), so a timer costs 12 bytes in one slice indexed by slot instead of a 32-byte
// wheel node plus an 8-byte handle. A slot's timer is stopped when its connection closes,
// so a new connection in the slot never finds the old one's.
//
// Timers fire at their tick, not before, whatever the wheel's size: a timer due more than
// one lap ahead is parked in the lap's last slot and moved on when that slot comes round.
type connTimers struct {
	nodes []connTimer // by table slot; grows with the table, never shrinks
	heads []int32     // per wheel slot: the first table slot on its list, -1 when empty
	mask  uint64
	now   uint64 // current tick; advanced with the loop's wheel
}

// connTimer is one table slot's timer. Its zero value is a stopped timer.
type connTimer struct {
	at uint32 // low 32 bits of the tick at which it fires
	// prev is 0 when stopped, -(wheel slot+1) for the first timer of a wheel slot's list,
	// else the previous table slot + 1. next is the next table slot, -1 at the end.
	prev, next int32
}

func newConnTimers(size int) connTimers {
	n := 1
	for n < size {
		n <<= 1
	}
	t := connTimers{heads: make([]int32, n), mask: uint64(n - 1)}
	for i := range t.heads {
		t.heads[i] = -1
	}
	return t
}

// set (re)arms the timer of table slot i to fire at tick at (absolute; a tick not after
// the current one means the next tick).
func (t *connTimers) set(i uint32, at uint64) {
	if int(i) >= len(t.nodes) {
		t.nodes = append(t.nodes, make([]connTimer, int(i)+1-len(t.nodes))...)
	}
	t.stop(i)
	if at <= t.now {
		at = t.now + 1
	}
	t.nodes[i].at = uint32(at)
	t.link(int32(i), at)
}

// stop disarms the timer of table slot i; a stopped timer is left as it is.
func (t *connTimers) stop(i uint32) {
	if int(i) >= len(t.nodes) {
		return
	}
	nd := &t.nodes[i]
	switch {
	case nd.prev == 0:
		return
	case nd.prev < 0:
		t.heads[-nd.prev-1] = nd.next
	default:
		t.nodes[nd.prev-1].next = nd.next
	}
	if nd.next >= 0 {
		t.nodes[nd.next].prev = nd.prev
	}
	nd.prev, nd.next = 0, -1
}

// armed reports whether table slot i has a running timer, and its tick (low 32 bits).
func (t *connTimers) armed(i uint32) (uint32, bool) {
	if int(i) >= len(t.nodes) || t.nodes[i].prev == 0 {
		return 0, false
	}
	return t.nodes[i].at, true
}

// link puts stopped timer i on the list of the wheel slot of tick at, or of the lap's last
// tick if at is further ahead.
func (t *connTimers) link(i int32, at uint64) {
	if at-t.now > t.mask {
		at = t.now + t.mask
	}
	ws := int32(at & t.mask)
	nd := &t.nodes[i]
	nd.prev, nd.next = -ws-1, t.heads[ws]
	if nd.next >= 0 {
		t.nodes[nd.next].prev = i + 1
	}
	t.heads[ws] = i
}

// advanceTo moves to tick target, calling fire with the table slot of every timer that
// expired, which is stopped by then. fire may set and stop any timer. After a long stall
// only one lap of slots is walked, which is enough to see every timer once.
func (t *connTimers) advanceTo(target uint64, fire func(slot uint32)) {
	if target <= t.now {
		return
	}
	if target-t.now > uint64(len(t.heads)) {
		t.now = target - uint64(len(t.heads))
	}
	for t.now < target {
		t.now++
		ws := t.now & t.mask
		// Every timer set while this slot is walked goes to another slot (link never uses
		// the current tick's), so the walk takes the list's head until it is empty.
		for i := t.heads[ws]; i >= 0; i = t.heads[ws] {
			t.stop(uint32(i))
			if at := t.nodes[i].at; int32(at-uint32(t.now)) > 0 { // parked: due in a later lap
				t.link(i, t.now+uint64(at-uint32(t.now)))
				continue
			}
			fire(uint32(i))
		}
	}
}
