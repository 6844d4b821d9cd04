package cluster

import "testing"

// TestForwardBuffersShrink: a queue towards another node keeps only the buffers it uses.
// After a burst of large batches, a publish that uses less than a quarter of a buffer
// over fwdKeepCap lets it go, and a queue idle for a trim interval gives both buffers up;
// a queue still holding records keeps its buffer. Before, both stayed at the largest
// batch ever carried (up to 8 MiB each) for as long as the node ran.
func TestForwardBuffersShrink(t *testing.T) {
	for _, tc := range []struct {
		name     string
		len, cap int
		kept     bool
	}{
		{"small buffer, little used", 10, 64 << 10, true},
		{"large buffer, a quarter used", 256 << 10, 1 << 20, true},
		{"large buffer, little used", 100, 1 << 20, false},
	} {
		got := recycle(make([]byte, tc.len, tc.cap))
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
