package server

import (
	"testing"

	"github.com/valyala/bytebufferpool"
)

func TestOutFree(t *testing.T) {
	var f outFree
	buf := func(c int) *bytebufferpool.ByteBuffer { return &bytebufferpool.ByteBuffer{B: make([]byte, 5, c)} }
	check := func(step string, n, bytes int) {
		t.Helper()
		if len(f.bufs) != n || f.bytes != bytes {
			t.Fatalf("%s: %d buffers, %d bytes; want %d, %d", step, len(f.bufs), f.bytes, n, bytes)
		}
	}
	if b := f.get(); cap(b.B) != outBufInitial || len(b.B) != 0 {
		t.Fatalf("new buffer len %d cap %d; want 0, %d", len(b.B), cap(b.B), outBufInitial)
	}
	big := buf(64 << 10)
	f.put(buf(4 << 10))
	f.put(big)
	check("two put", 2, 68<<10)
	if got := f.get(); got != big || len(got.B) != 0 {
		t.Fatalf("get: not the most recently put buffer, emptied")
	}
	f.put(big)
	f.put(buf(outFreeMaxBytes + 1))
	check("over budget alone: dropped", 2, 68<<10)
	f.put(buf(outFreeMaxBytes - 64<<10))
	check("budget: the least recently used make room", 2, outFreeMaxBytes)
	for range outFreeMaxBufs + 10 {
		f.put(buf(16))
	}
	check("count cap", outFreeMaxBufs, outFreeMaxBufs*16)

	f = outFree{}
	for range 4 {
		f.put(buf(1024))
	}
	f.trim() // starts the interval: nothing was measured before
	check("first trim", 4, 4096)
	f.put(f.get())
	f.trim()
	check("trim: three untouched released", 1, 1024)
	f.trim()
	check("trim: the last released", 0, 0)
}
