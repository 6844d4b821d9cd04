package cluster

import "testing"

// TestForwardBuffersShrink: a queue towards another node keeps only the buffers it uses.
// A buffer over fwdKeepCap more than four times the largest recent batch is let go, and
// a queue idle for a trim interval gives both buffers up; a queue still holding records
// keeps its buffer. Before, both stayed at the largest batch ever carried (up to 8 MiB
// each) for as long as the node ran.
func TestForwardBuffersShrink(t *testing.T) {
	for _, tc := range []struct {
		name          string
		len, cap, rec int
		kept          bool
	}{
		{"small buffer, little used", 10, 64 << 10, 10, true},
		{"large buffer, a quarter used", 256 << 10, 1 << 20, 256 << 10, true},
		{"large buffer, little used", 100, 1 << 20, 100, false},
		{"large buffer, little used now, filled lately", 100, 1 << 20, 900 << 10, true},
		{"large buffer, a quarter used lately", 100, 1 << 20, 256 << 10, true},
		{"buffer over the most kept, filled", 4 << 20, 4 << 20, 4 << 20, false},
	} {
		got := recycle(make([]byte, tc.len, tc.cap), tc.rec)
		if kept := got != nil; kept != tc.kept || kept && (len(got) != 0 || cap(got) != tc.cap) {
			t.Errorf("%s: recycle kept %v (len %d cap %d); want kept %v, emptied", tc.name, kept, len(got), cap(got), tc.kept)
		}
	}

	d := &dest{buf: make([]byte, 0, 8<<20), spare: make([]byte, 0, 8<<20), published: 5}
	d.trim() // published since the last trim: kept
	if d.buf == nil || d.spare == nil {
		t.Fatal("trim let a queue's buffers go while it was publishing")
	}
	d.mu.Lock()
	d.n = 1
	d.mu.Unlock()
	d.trim() // idle, but a record waits in buf
	if d.buf == nil || d.spare != nil {
		t.Fatalf("idle queue with a record waiting: buf kept %v, spare kept %v; want buf kept, spare let go", d.buf != nil, d.spare != nil)
	}
	d.mu.Lock()
	d.n = 0
	d.mu.Unlock()
	d.trim()
	if d.buf != nil || d.spare != nil {
		t.Fatal("an idle, empty queue kept its buffers")
	}
}

// batchOf queues n records of rec on d and publishes them (take, done), as the loops and
// the drainer do, without NATS.
func batchOf(t testing.TB, d *dest, rec []byte, n int) {
	for range n {
		if !d.add(rec, 7, 1<<20, embeddedMaxPayload) {
			t.Fatal("queue full")
		}
	}
	batch, got := d.take()
	if got != n {
		t.Fatalf("took %d records, queued %d", got, n)
	}
	d.done(batch)
}

// TestForwardSteadyLargeBatches: under a steady load of 4 KiB records whose batches vary
// from 100 KiB to 1 MiB from one publish to the next, the queue's buffers are reused: no
// allocation per record. Before, a buffer that a large batch had grown was let go after
// the next small batch (judged by that batch alone) and regrown by the next large one,
// on the event loops: ~4 KB allocated per record in a 3-node bench at 4 KiB. Once the
// large batches turn small, the large buffers go within two windows; once the publishes
// stop, within one.
func TestForwardSteadyLargeBatches(t *testing.T) {
	d := &dest{}
	rec := make([]byte, 4096)
	sizes := []int{25, 250, 25, 25, 25, 250, 25} // ~100 KiB and ~1 MiB batches
	cycle := func() {
		for _, n := range sizes {
			batchOf(t, d, rec, n)
		}
	}
	cycle() // the buffers grow once
	cycle()
	if a := testing.AllocsPerRun(20, cycle); a != 0 {
		t.Fatalf("%.1f allocations per cycle of %d batches; want 0", a, len(sizes))
	}

	// The load turns small: after two windows without a large batch, the buffers left
	// are sized for the small ones.
	for range 2 {
		batchOf(t, d, rec, 25)
		batchOf(t, d, rec, 25)
		d.rotate()
	}
	batchOf(t, d, rec, 25)
	batchOf(t, d, rec, 25)
	d.mu.Lock()
	bufCap := cap(d.buf)
	d.mu.Unlock()
	if c := max(bufCap, cap(d.spare)); c > 4*25*(len(rec)+recPrefix) {
		t.Fatalf("after two windows of small batches a buffer of %d bytes is kept; want at most four times the batch", c)
	}

	// The load stops: a window without a publish lets the buffers over fwdKeepCap go.
	batchOf(t, d, rec, 250)
	batchOf(t, d, rec, 250)
	d.rotate() // the window of the last publishes
	d.rotate() // a window without one
	d.mu.Lock()
	bufCap = cap(d.buf)
	d.mu.Unlock()
	if bufCap > fwdKeepCap || cap(d.spare) > fwdKeepCap {
		t.Fatalf("a window after the last publish, buffers of %d and %d bytes are kept; want at most %d", bufCap, cap(d.spare), fwdKeepCap)
	}
}
