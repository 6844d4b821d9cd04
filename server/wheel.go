package server

import "github.com/switchboard/switchboard/shard"

// timerKind says what a timer entry guards.
type timerKind uint8

const (
	timerHandshake timerKind = iota + 1 // conn id: no HELLO yet → HANDSHAKE_TIMEOUT
	timerIdle                           // conn id: nothing received for IdleTimeout → close
	timerRequest                        // request token: no REPLY in time → TIMEOUT
	timerSlow                           // conn id: outbound not drained → SLOW_CONSUMER
)

// timerEntry is one armed timer. Entries are never removed when their subject goes away:
// on expiry the owner looks the id up, and a stale id (closed connection, answered
// request) fails the generation check and is ignored. That keeps add O(1) with no
// cancellation bookkeeping.
type timerEntry struct {
	at   uint64 // tick at which it fires
	id   shard.ConnID
	kind timerKind
}

// wheel is a hashed timing wheel owned by one event loop. Ticks come from OnTick through
// EventLoop.Execute, so all access is on the loop goroutine.
type wheel struct {
	slots [][]timerEntry
	mask  uint64
	now   uint64 // current tick
	spare []timerEntry
}

func newWheel(size int) wheel {
	n := 1
	for n < size {
		n <<= 1
	}
	return wheel{slots: make([][]timerEntry, n), mask: uint64(n - 1)}
}

// add arms a timer that fires after the given number of ticks (at least one).
func (w *wheel) add(after uint64, kind timerKind, id shard.ConnID) {
	if after == 0 {
		after = 1
	}
	at := w.now + after
	s := &w.slots[at&w.mask]
	*s = append(*s, timerEntry{at: at, id: id, kind: kind})
}

// advanceTo moves the wheel to tick target, calling fire for every entry that expired.
// fire may add timers. After a long stall only one lap of slots is walked, which is enough
// to see every entry once.
func (w *wheel) advanceTo(target uint64, fire func(timerEntry)) {
	if target <= w.now {
		return
	}
	if target-w.now > uint64(len(w.slots)) {
		w.now = target - uint64(len(w.slots))
	}
	for w.now < target {
		w.now++
		s := &w.slots[w.now&w.mask]
		if len(*s) == 0 {
			continue
		}
		// Swap the slot for the spare slice so that fire may add timers (even to this
		// slot) while we walk the old entries. Entries hold no pointers: no clearing needed.
		entries := *s
		*s = w.spare[:0]
		for _, e := range entries {
			if e.at > w.now {
				*s = append(*s, e) // a later lap
				continue
			}
			fire(e)
		}
		w.spare = entries[:0]
	}
}
