package server

import (
	"testing"

	"github.com/switchboard/switchboard/codec"
)

// TestRingBacklogIsNotSlowConsumer: messages that pile up in a target loop's ring while
// that loop is busy land in one drain batch, past the target's MaxPending, although the
// target reads everything. They are written and judged again before anyone is called a
// slow consumer: every acknowledged message arrives and the target stays connected.
func TestRingBacklogIsNotSlowConsumer(t *testing.T) {
	const maxPending, burst = 8, 40
	s := startServer(t, Config{Loops: 2, MaxPending: maxPending})
	sink := registeredOn(t, s, "sink", 1)
	src := connectOn(t, s, "src", 0)
	release := holdRing(t, s, 1) // loop 1 does not drain: the burst waits in its ring
	var batch []byte
	for i := 1; i <= burst; i++ {
		batch = codec.AppendSend(batch, codec.FlagAck, uint32(i), "sink", []byte("m"))
	}
	src.Write(batch)
	for i := 1; i <= burst; i++ {
		if f := src.Expect(codec.TypeOK); f.Corr != uint32(i) {
			t.Fatalf("OK corr %d; want %d", f.Corr, i)
		}
	}
	release()
	for i := 0; i < burst; i++ {
		sink.Expect(codec.TypeMessage)
	}
	pingBarrier(t, sink, 99) // still connected, nothing else arrived
	if n := s.Stats().SlowConsumers; n != 0 {
		t.Fatalf("%d slow consumers; want 0 (the sink read everything)", n)
	}
}
