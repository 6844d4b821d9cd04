package server

import (
	"sync/atomic"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// A gate is where a message for a connection of another loop is admitted: the sender's
// loop admits it (and answers the SEND's ACK) before it pushes the message to the target
// loop's ring, so the gate must say, without asking the target loop, whether the message
// will be delivered. It is one atomic word per connection slot:
//
//	bits 63-48  generation of the connection in the slot (its ConnID's)
//	bits 47-40  gateOpen, gateSlow or gateGone (set only by the owning loop)
//	bits 39-0   messages admitted and still on their way (in a ring)
//
// The owning loop never drops what its gate admitted while the connection is open or
// closing as a slow consumer: a landing message is queued even over the caps. When the
// connection becomes a slow consumer the loop shuts the gate (gateSlow) and waits for the
// count to reach 0 before it queues ERROR SLOW_CONSUMER, so the ERROR follows every
// acknowledged message; one closing after GOODBYE or in a drain's batch waits for the
// count in the same way before it closes (closeWhenLanded). Only a connection that is
// gone (closed, or closing for another reason) loses what was admitted: NO_ROUTE
// semantics, counted as dropped.
type gateState uint8

const (
	gateOpen gateState = iota // admits
	gateSlow                  // slow consumer: refuses with QUEUE_FULL
	gateGone                  // closing or closed: refuses with NO_ROUTE
)

const (
	gateGenShift   = 48
	gateStateShift = 40
	gateCountMask  = 1<<gateStateShift - 1
	gateChunkBits  = 12
	gateChunkSize  = 1 << gateChunkBits
)

// slotWords are a connection slot's two cross-loop words: its gate (messages to the
// connection) and its credit (messages from it, credit.go).
type slotWords struct {
	gate, credit atomic.Uint64
}

type gateChunk [gateChunkSize]slotWords

// gates are one loop's gates and credits, by connection slot. Chunks are allocated by
// the owning loop when a connection opens in a slot not covered yet (not per frame) and
// never freed; any goroutine may read them. The chunk table is 32 KiB per loop.
type gates struct {
	chunks [shard.MaxSlots / gateChunkSize]atomic.Pointer[gateChunk]
}

func gateWord(id shard.ConnID, st gateState) uint64 {
	return uint64(id.Gen())<<gateGenShift | uint64(st)<<gateStateShift
}

func gateGen(w uint64) uint16        { return uint16(w >> gateGenShift) }
func gateStateOf(w uint64) gateState { return gateState(w >> gateStateShift) }

// slot returns the words of id's slot, or nil if no connection ever opened there.
// Safe for concurrent use.
func (g *gates) slot(id shard.ConnID) *slotWords {
	ch := g.chunks[id.Slot()>>gateChunkBits].Load()
	if ch == nil {
		return nil
	}
	return &ch[id.Slot()&(gateChunkSize-1)]
}

// word returns the gate of id's slot, or nil if no connection ever opened there.
// Safe for concurrent use.
func (g *gates) word(id shard.ConnID) *atomic.Uint64 {
	if s := g.slot(id); s != nil {
		return &s.gate
	}
	return nil
}

// open makes id's gate admit, with nothing on the way, and gives it its full credit.
// Owning loop only (OnOpen).
func (g *gates) open(id shard.ConnID) {
	i := id.Slot() >> gateChunkBits
	if g.chunks[i].Load() == nil {
		g.chunks[i].Store(new(gateChunk))
	}
	s := g.slot(id)
	s.gate.Store(gateWord(id, gateOpen))
	s.credit.Store(gateWord(id, 0))
}

// admit counts one message on its way to connection id, or returns the code the sender
// is told: QUEUE_FULL for a slow consumer, NO_ROUTE for a connection that is gone. Safe
// for concurrent use; lock-free.
func (g *gates) admit(id shard.ConnID) codec.ErrorCode {
	w := g.word(id)
	if w == nil {
		return codec.CodeNoRoute
	}
	for {
		v := w.Load()
		if gateGen(v) != id.Gen() {
			return codec.CodeNoRoute
		}
		switch gateStateOf(v) {
		case gateSlow:
			return codec.CodeQueueFull
		case gateGone:
			return codec.CodeNoRoute
		}
		if w.CompareAndSwap(v, v+1) {
			return 0
		}
	}
}

// unadmit takes back an admission whose message was not handed over (the ring was full).
// Safe for concurrent use.
func (g *gates) unadmit(id shard.ConnID) {
	w := g.word(id)
	for {
		v := w.Load()
		if gateGen(v) != id.Gen() || v&gateCountMask == 0 {
			return
		}
		if w.CompareAndSwap(v, v-1) {
			return
		}
	}
}

// land counts one admitted message as arrived and returns how many are still on their way
// to id. Owning loop only; the generation cannot change meanwhile (only this loop reopens
// a slot), so a plain decrement is safe against concurrent admits.
func (g *gates) land(id shard.ConnID) uint64 {
	w := g.word(id)
	if w == nil {
		return 0
	}
	v := w.Load()
	if gateGen(v) != id.Gen() || v&gateCountMask == 0 {
		return 0
	}
	return w.Add(^uint64(0)) & gateCountMask
}

// onTheWay is how many admitted messages have not arrived yet. Owning loop only.
func (g *gates) onTheWay(id shard.ConnID) uint64 {
	w := g.word(id)
	if w == nil {
		return 0
	}
	v := w.Load()
	if gateGen(v) != id.Gen() {
		return 0
	}
	return v & gateCountMask
}

// shut stops admissions to id (st is gateSlow or gateGone) and returns how many admitted
// messages are still on their way. Owning loop only.
func (g *gates) shut(id shard.ConnID, st gateState) uint64 {
	w := g.word(id)
	if w == nil {
		return 0
	}
	for {
		v := w.Load()
		if gateGen(v) != id.Gen() {
			return 0
		}
		n := gateWord(id, st) | v&gateCountMask
		if w.CompareAndSwap(v, n) {
			return v & gateCountMask
		}
	}
}
