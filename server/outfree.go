package server

import "github.com/valyala/bytebufferpool"

// outFree is one loop's free list of output buffers (outbox.frames), most recently used
// last. Output buffers are taken and given back on their loop only, so it needs no
// synchronisation. It is kept apart from the message copies that cross loops (msgPool):
// a pool shared by both calibrated its sizes to the many small copies and threw the
// large output buffers away, so each round's output regrew by doubling (issue 12:
// ~1.2 KiB allocated per routed 256 B message).
//
// It holds at most outFreeMaxBufs buffers and outFreeMaxBytes bytes of capacity, the
// least recently used given up first; the buffers not taken during a trim interval are
// released (trim), so an idle loop holds none. The zero value is an empty list. Owned by
// its loop.
type outFree struct {
	bufs  []*bytebufferpool.ByteBuffer
	bytes int // capacity held by bufs
	low   int // fewest buffers held since the last trim
}

// The bounds must hold what one poll round uses at its peak (every connection the round
// writes to holds one buffer until the round's flush), or each round regrows its output
// from outBufInitial by doubling: with 1 MiB and 64 buffers, routing 4 KiB messages
// among 50 connections allocated ~530 MB a second in regrowths (1.6 GB in a 3 s profile)
// and drove the heap zone RED (docs/BENCHMARKS.md, "Large messages"). What is held is
// only what a round used: trim gives back what was not taken for a trim interval.
const (
	outFreeMaxBufs  = 4096
	outFreeMaxBytes = 16 << 20 // per loop
	outBufInitial   = 1 << 10  // a new output buffer's capacity
)

// get returns an empty buffer.
func (f *outFree) get() *bytebufferpool.ByteBuffer {
	n := len(f.bufs)
	if n == 0 {
		f.low = 0
		return &bytebufferpool.ByteBuffer{B: make([]byte, 0, outBufInitial)}
	}
	b := f.bufs[n-1]
	f.bufs[n-1] = nil
	f.bufs = f.bufs[:n-1]
	f.bytes -= cap(b.B)
	f.low = min(f.low, n-1)
	return b
}

// put gives b back. A buffer larger than the whole budget is dropped; otherwise the
// least recently used buffers make room for it.
func (f *outFree) put(b *bytebufferpool.ByteBuffer) {
	c := cap(b.B)
	if c > outFreeMaxBytes {
		return
	}
	drop := 0
	for drop < len(f.bufs) && (len(f.bufs)-drop >= outFreeMaxBufs || f.bytes+c > outFreeMaxBytes) {
		f.bytes -= cap(f.bufs[drop].B)
		drop++
	}
	if drop > 0 {
		f.release(drop)
	}
	b.B = b.B[:0]
	f.bufs = append(f.bufs, b)
	f.bytes += c
}

// trim releases the buffers that were not taken since the last trim (the low-water mark
// of the list). Capacity accounting for the released ones is done here.
func (f *outFree) trim() {
	n := f.low
	for _, b := range f.bufs[:n] {
		f.bytes -= cap(b.B)
	}
	f.release(n)
	f.low = len(f.bufs)
}

// release forgets the n least recently used buffers (their bytes are already deducted).
func (f *outFree) release(n int) {
	k := copy(f.bufs, f.bufs[n:])
	clear(f.bufs[k:])
	f.bufs = f.bufs[:k]
	f.low = max(0, min(f.low-n, k))
}
