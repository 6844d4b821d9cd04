package shard

import (
	"math/bits"
	"sync/atomic"
)

// Ring is a bounded, lock-free, multi-producer single-consumer FIFO queue.
// It is Dmitry Vyukov's bounded queue: every cell carries a sequence number
// that tells producers and the consumer whose turn the cell is, so a
// producer needs one CAS on the tail and the consumer none.
//
// Push is safe for concurrent use by any number of goroutines. Pop must be
// called by one goroutine at a time (the consumer, typically the owning
// event loop). Len and Cap are safe anywhere.
//
// Ring never blocks and never grows: Push reports false when the ring is
// full, and the caller decides what that means (for switchboard,
// QUEUE_FULL).
type Ring[T any] struct {
	_    [cacheLine]byte
	tail atomic.Uint64 // atomic; next position to push (producers CAS it)
	_    [cacheLine - 8]byte
	head atomic.Uint64 // atomic; next position to pop (written by the consumer only)
	_    [cacheLine - 8]byte
	mask uint64    // immutable after NewRing
	buf  []cell[T] // immutable slice header after NewRing
}

type cell[T any] struct {
	// seq == pos: free for the producer of position pos.
	// seq == pos+1: holds the value pushed at pos, ready for the consumer.
	seq atomic.Uint64
	v   T
}

// NewRing returns an empty Ring holding up to capacity values, rounded up to
// a power of two (minimum 2).
func NewRing[T any](capacity int) *Ring[T] {
	if capacity < 2 {
		capacity = 2
	}
	n := 1 << bits.Len(uint(capacity-1))
	r := &Ring[T]{mask: uint64(n - 1), buf: make([]cell[T], n)}
	for i := range r.buf {
		r.buf[i].seq.Store(uint64(i))
	}
	return r
}

// Push appends v and reports true, or reports false without blocking if the
// ring is full. Safe for concurrent use.
func (r *Ring[T]) Push(v T) bool {
	pos := r.tail.Load()
	for {
		c := &r.buf[pos&r.mask]
		seq := c.seq.Load()
		switch dif := int64(seq - pos); {
		case dif == 0:
			if r.tail.CompareAndSwap(pos, pos+1) {
				c.v = v
				c.seq.Store(pos + 1) // publish: the consumer may read c.v now
				return true
			}
			pos = r.tail.Load()
		case dif < 0:
			// The cell still holds the value pushed one lap ago: full.
			return false
		default:
			// Another producer claimed pos; catch up.
			pos = r.tail.Load()
		}
	}
}

// Pop removes and returns the oldest value. It reports false if the ring is
// empty, or if the producer of the oldest position has claimed it but not
// yet finished writing (Pop never waits for it). Only one goroutine may call
// Pop at a time.
func (r *Ring[T]) Pop() (T, bool) {
	var zero T
	pos := r.head.Load()
	c := &r.buf[pos&r.mask]
	if c.seq.Load() != pos+1 {
		return zero, false
	}
	v := c.v
	c.v = zero                    // retain nothing
	c.seq.Store(pos + r.mask + 1) // free the cell for the producer one lap ahead
	r.head.Store(pos + 1)
	return v, true
}

// Len returns the approximate number of values in the ring. It is safe to
// call from any goroutine; under concurrent Push and Pop the result is a
// recent estimate clamped to [0, Cap()].
func (r *Ring[T]) Len() int {
	head := r.head.Load()
	tail := r.tail.Load()
	n := int64(tail - head)
	if n < 0 {
		return 0
	}
	if n > int64(len(r.buf)) {
		return len(r.buf)
	}
	return int(n)
}

// Cap returns the ring's capacity.
func (r *Ring[T]) Cap() int { return len(r.buf) }
