package server

import (
	"testing"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/limits"
)

// TestReloadLimits tightens and relaxes the reloadable limits on a running server: open
// connections get the new per-connection rate, the per-IP cap counts connections opened
// before it existed, and the queue bounds (messages and bytes) change.
func TestReloadLimits(t *testing.T) {
	s := startServer(t, Config{})
	p := connect(t, s, "p")
	connect(t, s, "q") // a second connection from the same address

	next := s.Config()
	next.Config = limits.Config{ConnMsgRate: 5, ConnMsgBurst: 5, MaxConnsPerIP: 2}
	next.MaxQueue = 1234
	next.MaxQueueBytes = 8 << 20
	if err := s.ReloadLimits(next); err != nil {
		t.Fatal(err)
	}
	// The loops apply it on their next turn: poll until a burst is limited.
	limitedBurst := func() (answered, limited int) {
		var batch []byte
		for i := 1; i <= 20; i++ {
			batch = codec.AppendFrame(batch, codec.TypeEcho, 0, uint32(i), nil)
		}
		p.Write(batch)
		for i := 0; i < 20; i++ {
			f, err := p.Read()
			if err != nil {
				t.Fatal(err)
			}
			if f.Type == codec.TypeEchoReply {
				answered++
			} else {
				limited++
			}
		}
		return answered, limited
	}
	var answered, limited int
	waitFor(t, "the new rate on an open connection", func() bool {
		answered, limited = limitedBurst()
		return limited > 0
	})
	if answered > 6 {
		t.Fatalf("%d of 20 answered at 5 msg/s; want about 5", answered)
	}
	late := rawpeer.Dial(t, s.Addr().String())
	late.ExpectError(codec.CodeBusy) // per-IP cap 2, and two were open before the reload
	if s.maxQueue() != 1234 || s.Capacity().QueueSlots.Limit != 1234 {
		t.Fatalf("max-queue %d; want 1234", s.maxQueue())
	}
	// The bytes bound that the sampler refuses QUEUE_FULL by (TestQueueBytesBound).
	if s.maxQueueBytes() != 8<<20 || s.Capacity().QueueBytes.Limit != 8<<20 {
		t.Fatalf("max-queue-bytes %d; want %d", s.maxQueueBytes(), 8<<20)
	}

	// Relax everything again.
	next.Config = limits.Config{}
	if err := s.ReloadLimits(next); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the limit lifted", func() bool {
		_, limited = limitedBurst()
		return limited == 0
	})
	connect(t, s, "r")

	bad := next
	bad.Config = limits.Config{ConnMsgRate: -1}
	if err := s.ReloadLimits(bad); err == nil {
		t.Fatal("ReloadLimits accepted a negative rate")
	}
}
