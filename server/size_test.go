package server

import (
	"testing"
	"unsafe"
)

// TestConnSize keeps the per-connection state in its allocation size class: it is paid
// once per idle connection, 100K times per node.
func TestConnSize(t *testing.T) {
	if got := unsafe.Sizeof(conn{}); got > 160 {
		t.Fatalf("conn is %d bytes; keep it within the 160-byte size class", got)
	}
}

// TestTimerNodeSize: every idle connection holds one timer node (its idle timer).
func TestTimerNodeSize(t *testing.T) {
	if got := unsafe.Sizeof(timerNode{}); got > 32 {
		t.Fatalf("timerNode is %d bytes; keep it within 32", got)
	}
}
