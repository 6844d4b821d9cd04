package server

import (
	"testing"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
)

// TestNoAllocsHotPathLimitsOn is TestNoAllocsHotPath with the per-frame limits armed:
// per-connection message and byte buckets and the node rate (through the loop's lease),
// set far from tripping, so every frame takes the admission path and still allocates
// nothing. A refused frame (its ERROR with retry-after) allocates nothing either. The
// cross-loop wake-up stays forced as in TestNoAllocsHotPath (gnet's Execute allocates
// once per batch, not per message).
func TestNoAllocsHotPathLimitsOn(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race; allocation counts run in `make test`")
	}
	s, loops, a, b, x := hotPathFixture(t)

	arm := func(lim limits.Config) {
		s.g.rated.Store(true)
		m, by := lim.ConnLimiters()
		a.lim, b.lim = &connLimits{msgs: m, bytes: by}, &connLimits{msgs: m, bytes: by}
		loops[0].lease = nil
		if lim.NodeMsgRate > 0 {
			loops[0].lease = lim.NodeLimiter(2).Lease(0)
		}
	}
	t.Cleanup(func() { s.g.rated.Store(false); a.lim, b.lim, loops[0].lease = nil, nil, nil })

	payload := make([]byte, 64)
	echo := codec.AppendFrame(nil, codec.TypeEcho, 0, 1, payload)
	sendLocal := codec.AppendSend(nil, 0, 0, "b", payload)
	sendRemote := codec.AppendSend(nil, 0, 0, "x", payload)
	req := codec.AppendRequest(nil, 9, "b", 0, payload)

	roomy := limits.Config{ConnMsgRate: 1 << 30, ConnMsgBurst: 1 << 30, ConnByteRate: 1 << 40,
		ConnByteBurst: 1 << 40, NodeMsgRate: 1 << 30, NodeMsgBurst: 1 << 30}
	tests := []struct {
		name  string
		lim   limits.Config
		frame []byte
		after func() // runs before the end-of-round flush when keep is set
		keep  bool
	}{
		{"echo/conn-and-node", roomy, echo, nil, false},
		{"echo/conn-only", limits.Config{ConnMsgRate: 1 << 30, ConnMsgBurst: 1 << 30}, echo, nil, false},
		{"echo/node-only", limits.Config{NodeMsgRate: 1 << 30, NodeMsgBurst: 1 << 30}, echo, nil, false},
		{"send-same-loop", roomy, sendLocal, func() { b.pending = 0 }, false},
		{"send-cross-loop", roomy, sendRemote, func() {
			loops[1].armed.Store(true)
			loops[1].drainBatch(loops[1].inbox.Cap())
			x.pending = 0
		}, false},
		{"request-reply-same-loop", roomy, req, func() {
			in := decodeOne(t, b.frames.B) // b received the INCOMING; it answers
			tok, _, _, _, _ := codec.ParseIncoming(in.Body)
			b.frames.B = b.frames.B[:0]
			reply := codec.AppendReply(scratchReply[:0], 0, tok, in.Body[:8])
			rf, _, _ := codec.Decode(reply, codec.DefaultMaxFrame)
			loops[0].dispatch(b, rf, s.clock())
			loops[0].flushDirty()
			b.pending = 0
		}, true},
		// A bucket that never refills: after the first frame every ECHO is refused with
		// ERROR RATE_LIMITED and a retry-after.
		{"echo/refused", limits.Config{ConnMsgRate: 1, ConnMsgBurst: 1}, echo, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arm(tt.lim)
			step := func() {
				f, _, _ := codec.Decode(tt.frame, codec.DefaultMaxFrame)
				loops[0].dispatch(a, f, s.clock())
				if !tt.keep {
					loops[0].flushDirty()
				}
				if tt.after != nil {
					tt.after()
				}
			}
			step() // warm the pools
			if got := testing.AllocsPerRun(1000, step); got != 0 {
				t.Errorf("%v allocs per frame; want 0", got)
			}
		})
	}
	if a.inflight != 0 {
		t.Errorf("inflight %d after the replies; want 0", a.inflight)
	}
	var refused uint64
	for _, lp := range loops {
		refused += lp.stats.rateLimitedConn.Load()
	}
	if refused < 1000 {
		t.Errorf("%d frames refused by the connection rate; want the refused case to be refused", refused)
	}
}

// TestNoAllocsShed: a frame shed by the traffic zone (ERROR BUSY with retry-after)
// allocates nothing: a node in RED may refuse hundreds of thousands a second, and its
// reason was built for each one.
func TestNoAllocsShed(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race; allocation counts run in `make test`")
	}
	s, loops, a, _, _ := hotPathFixture(t)
	th := limits.DefaultThresholds()
	th.MinDwell = 0
	s.g.traffic = limits.NewZoneTracker(th)
	if z, _ := s.g.traffic.Update(s.clock(), limits.Inputs{Queued: 1}); !z.ShedsAllButControl() {
		t.Fatalf("traffic zone %v; want RED", z)
	}
	echo := codec.AppendFrame(nil, codec.TypeEcho, 0, 1, make([]byte, 64))
	step := func() {
		f, _, _ := codec.Decode(echo, codec.DefaultMaxFrame)
		loops[0].dispatch(a, f, s.clock())
		loops[0].flushDirty()
	}
	step()
	if got := testing.AllocsPerRun(1000, step); got != 0 {
		t.Errorf("%v allocs per shed frame; want 0", got)
	}
	if shed := loops[0].stats.shed.Load(); shed < 1000 {
		t.Errorf("%d frames shed; want every ECHO shed", shed)
	}
}
