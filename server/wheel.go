package server

import "github.com/switchboard/switchboard/shard"

// timerKind says what a timer guards.
type timerKind uint8

const (
	timerRequest timerKind = iota + 1 // request token: no REPLY in time → TIMEOUT
	timerSlow                         // conn id: output waited too long untaken → SLOW_CONSUMER
)

// timerEntry is what fires.
type timerEntry struct {
	at   uint64 // tick at which it fires
	id   shard.ConnID
	kind timerKind
}

// timerHandle names an armed timer for cancel; the zero handle names none.
type timerHandle struct {
	idx int32 // node index + 1
	gen uint32
}

// timerNode is one armed timer on a slot's doubly linked list. Nodes live in one slice
// and are recycled through a free list, so arming and cancelling allocate nothing once the
// slice has grown to the peak number of live timers. It is kept at 32 bytes: timerEntry's
// fields are inlined (embedding it would keep its padding) and the slot is at&mask rather
// than a field. (An idle connection holds none: its handshake and idle timeouts are its
// connTimer, conntimer.go.)
type timerNode struct {
	at         uint64 // tick at which it fires
	id         shard.ConnID
	prev, next int32 // node indices, -1 at the ends
	gen        uint32
	kind       timerKind // 0 when free
}

func (nd *timerNode) entry() timerEntry { return timerEntry{at: nd.at, id: nd.id, kind: nd.kind} }

// wheel is a hashed timing wheel owned by one event loop: O(1) add and cancel, and each
// tick visits only its slot. Ticks come from OnTick through EventLoop.Execute.
//
// Request timers are cancelled when the request is answered, so memory follows the
// requests in flight, not the request rate times the timeout. Slow-consumer timers are not
// cancelled: on expiry the owner looks the connection up and a stale id fails the
// generation check.
type wheel struct {
	nodes []timerNode
	free  []int32
	heads []int32 // per slot, -1 when empty
	mask  uint64
	now   uint64 // current tick
	live  int
}

func newWheel(size int) wheel {
	n := 1
	for n < size {
		n <<= 1
	}
	w := wheel{heads: make([]int32, n), mask: uint64(n - 1)}
	for i := range w.heads {
		w.heads[i] = -1
	}
	return w
}

// add arms a timer that fires after the given number of ticks (at least one).
func (w *wheel) add(after uint64, kind timerKind, id shard.ConnID) timerHandle {
	if after == 0 {
		after = 1
	}
	var i int32
	if n := len(w.free); n > 0 {
		i = w.free[n-1]
		w.free = w.free[:n-1]
	} else {
		w.nodes = append(w.nodes, timerNode{})
		i = int32(len(w.nodes) - 1)
	}
	nd := &w.nodes[i]
	nd.at, nd.id, nd.kind = w.now+after, id, kind
	w.link(i, w.slotOf(nd.at))
	w.live++
	return timerHandle{idx: i + 1, gen: nd.gen}
}

// cancel disarms h; a handle that already fired or was cancelled is ignored.
func (w *wheel) cancel(h timerHandle) {
	i := h.idx - 1
	if i < 0 || int(i) >= len(w.nodes) {
		return
	}
	nd := &w.nodes[i]
	if nd.kind == 0 || nd.gen != h.gen {
		return
	}
	w.release(i)
}

func (w *wheel) slotOf(at uint64) int32 { return int32(at & w.mask) }

func (w *wheel) link(i, slot int32) {
	nd := &w.nodes[i]
	nd.prev, nd.next = -1, w.heads[slot]
	if nd.next >= 0 {
		w.nodes[nd.next].prev = i
	}
	w.heads[slot] = i
}

// release unlinks node i and puts it on the free list, invalidating its handles.
func (w *wheel) release(i int32) {
	nd := &w.nodes[i]
	if nd.prev >= 0 {
		w.nodes[nd.prev].next = nd.next
	} else {
		w.heads[w.slotOf(nd.at)] = nd.next
	}
	if nd.next >= 0 {
		w.nodes[nd.next].prev = nd.prev
	}
	nd.kind, nd.prev, nd.next = 0, -1, -1
	nd.gen++
	w.free = append(w.free, i)
	w.live--
}

// advanceTo moves the wheel to tick target, calling fire for every timer that expired.
// fire may add and cancel timers. After a long stall only one lap of slots is walked,
// which is enough to see every timer once.
func (w *wheel) advanceTo(target uint64, fire func(timerEntry)) {
	if target <= w.now {
		return
	}
	if target-w.now > uint64(len(w.heads)) {
		w.now = target - uint64(len(w.heads))
	}
	for w.now < target {
		w.now++
		slot := int32(w.now & w.mask)
		// Timers added while firing go to the head of their slot, behind the cursor, so
		// they are not visited in this pass. If fire released the next node, restart.
		for i := w.heads[slot]; i >= 0; {
			nd := &w.nodes[i]
			next, nextGen := nd.next, uint32(0)
			if next >= 0 {
				nextGen = w.nodes[next].gen
			}
			if nd.at > w.now { // a later lap
				i = next
				continue
			}
			e := nd.entry()
			w.release(i)
			fire(e)
			// A released node has a new generation, and so has one added again since.
			if next >= 0 && w.nodes[next].gen != nextGen {
				next = w.heads[slot]
			}
			i = next
		}
	}
}
