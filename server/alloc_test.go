package server

import (
	"io"
	"log/slog"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
)

// fakeConn is the part of gnet.Conn the dispatch path touches, for measuring it without
// sockets. Unimplemented methods panic through the nil embedded interface.
type fakeConn struct {
	gnet.Conn
	written int
}

func (f *fakeConn) Write(p []byte) (int, error) { f.written += len(p); return len(p), nil }
func (f *fakeConn) OutboundBuffered() int       { return 0 }

// newTestLoop builds a server and loop state without starting gnet; execFn replaces the
// cross-loop wake-up.
func newTestLoops(t testing.TB, n int) (*Server, []*loop) {
	t.Helper()
	s, err := New(Config{Listen: "127.0.0.1:0"}, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	var loops []*loop
	for i := 0; i < n; i++ {
		lp := newLoop(s, uint8(i), nil)
		s.loops[i].Store(lp)
		loops = append(loops, lp)
	}
	s.nloops.Store(int32(n))
	return s, loops
}

func addConn(t testing.TB, lp *loop, name string) (*conn, *fakeConn) {
	t.Helper()
	fc := &fakeConn{}
	c := &conn{outbox: outbox{gc: fc, lp: lp}, state: stateActive, name: name}
	id, err := lp.conns.Add(c)
	if err != nil {
		t.Fatal(err)
	}
	c.id = id
	lp.gates.open(id) // as OnOpen does
	return c, fc
}

func mustRegister(t testing.TB, s *Server, name string, c *conn) {
	t.Helper()
	if err := s.dir.Claim(name, c.id, nil); err != nil {
		t.Fatal(err)
	}
	c.names = append(c.names, name)
}

func decodeOne(t testing.TB, b []byte) codec.Frame {
	t.Helper()
	f, _, err := codec.Decode(b, codec.DefaultMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// hotPathFixture is two loops without an engine: a and b (which owns "b") on loop 0, x
// (which owns "x") on loop 1. The ring wake-up goes through gnet's Execute, which needs a
// running engine; loop 1 is marked as already armed so push only enqueues (as it does for
// every message after the first of a batch).
func hotPathFixture(t testing.TB) (s *Server, loops []*loop, a, b, x *conn) {
	t.Helper()
	s, loops = newTestLoops(t, 2)
	a, _ = addConn(t, loops[0], "a")
	b, _ = addConn(t, loops[0], "b")
	x, _ = addConn(t, loops[1], "x")
	mustRegister(t, s, "b", b)
	mustRegister(t, s, "x", x)
	loops[1].armed.Store(true)
	return s, loops, a, b, x
}

// TestNoAllocsHotPath proves the per-frame paths allocate nothing: decode + ECHO, SEND to
// a connection on the same loop, SEND to another loop (ring push, then the drain on the
// target loop), REQUEST and REPLY on one loop.
func TestNoAllocsHotPath(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race; allocation counts run in `make test`")
	}
	_, loops, a, b, x := hotPathFixture(t)

	echo := codec.AppendFrame(nil, codec.TypeEcho, 0, 1, make([]byte, 64))
	sendLocal := codec.AppendSend(nil, 0, 0, "b", make([]byte, 64))
	sendRemote := codec.AppendSend(nil, 0, 0, "x", make([]byte, 64))
	req := codec.AppendRequest(nil, 9, "b", 0, make([]byte, 64))

	run := func(name string, frame []byte, after func()) {
		t.Run(name, func(t *testing.T) {
			step := func() {
				f, _, _ := codec.Decode(frame, codec.DefaultMaxFrame)
				loops[0].dispatch(a, f, 0)
				loops[0].flushDirty()
				if after != nil {
					after()
				}
			}
			step() // warm the pools
			if got := testing.AllocsPerRun(1000, step); got != 0 {
				t.Errorf("%s: %v allocs per frame; want 0", name, got)
			}
		})
	}
	run("echo", echo, nil)
	run("send-same-loop", sendLocal, func() { b.pending = 0 })
	run("send-cross-loop", sendRemote, func() {
		loops[1].armed.Store(true)
		loops[1].drainBatch(loops[1].inbox.Cap())
		x.pending = 0
	})
	// REQUEST then the responder's REPLY, both on loop 0.
	t.Run("request-reply-same-loop", func(t *testing.T) {
		step := func() {
			f, _, _ := codec.Decode(req, codec.DefaultMaxFrame)
			loops[0].dispatch(a, f, 0)
			// b received INCOMING in its buffer; answer it.
			in := decodeOne(t, b.frames.B)
			tok, _, _, _, _ := codec.ParseIncoming(in.Body)
			b.frames.B = b.frames.B[:0]
			reply := codec.AppendReply(scratchReply[:0], 0, tok, in.Body[:8])
			rf, _, _ := codec.Decode(reply, codec.DefaultMaxFrame)
			loops[0].dispatch(b, rf, 0)
			loops[0].flushDirty()
			b.pending = 0
		}
		step()
		if got := testing.AllocsPerRun(1000, step); got != 0 {
			t.Errorf("request+reply: %v allocs; want 0", got)
		}
		if a.inflight != 0 {
			t.Errorf("inflight %d after replies; want 0", a.inflight)
		}
	})
}

var scratchReply = make([]byte, 0, 256)

func BenchmarkDispatch(b *testing.B) {
	s, loops := newTestLoops(b, 2)
	a, _ := addConn(b, loops[0], "a")
	local, _ := addConn(b, loops[0], "local")
	remote, _ := addConn(b, loops[1], "remote")
	mustRegister(b, s, "local", local)
	mustRegister(b, s, "remote", remote)
	loops[1].armed.Store(true)
	b.Run("echo-limits-on/16B", func(b *testing.B) {
		// Every per-frame limit armed but far from tripping: the cost of tiers 2-3 and the
		// zone check on the hot path, against echo/16B in the same run.
		s.g.rated.Store(true)
		lim := limits.Config{ConnMsgRate: 1 << 30, ConnByteRate: 1 << 30, NodeMsgRate: 1 << 30}
		m, by := lim.ConnLimiters()
		a.lim = &connLimits{msgs: m, bytes: by}
		loops[0].lease = lim.NodeLimiter(2).Lease(0)
		defer func() { s.g.rated.Store(false); a.lim, loops[0].lease = nil, nil }()
		frame := codec.AppendFrame(nil, codec.TypeEcho, 0, 1, make([]byte, 16))
		var batch []byte
		for range 64 {
			batch = append(batch, frame...)
		}
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += 64 {
			now := s.clock()
			off := 0
			for off < len(batch) {
				f, n, _ := codec.Decode(batch[off:], codec.DefaultMaxFrame)
				off += n
				loops[0].dispatch(a, f, now)
			}
			loops[0].flushDirty()
		}
	})
	for _, size := range []int{16, 256} {
		payload := make([]byte, size)
		cases := []struct {
			name  string
			frame []byte
			after func()
		}{
			{"echo", codec.AppendFrame(nil, codec.TypeEcho, 0, 1, payload), nil},
			{"send-same-loop", codec.AppendSend(nil, 0, 0, "local", payload), func() { local.pending = 0 }},
			{"send-cross-loop", codec.AppendSend(nil, 0, 0, "remote", payload), func() {
				loops[1].drainBatch(loops[1].inbox.Cap())
				remote.pending = 0
			}},
		}
		for _, c := range cases {
			b.Run(c.name+"/"+itoa(size), func(b *testing.B) {
				// 64 frames per "callback", as a pipelined client would deliver them.
				var batch []byte
				for range 64 {
					batch = append(batch, c.frame...)
				}
				b.SetBytes(int64(len(c.frame)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i += 64 {
					off := 0
					for off < len(batch) {
						f, n, _ := codec.Decode(batch[off:], codec.DefaultMaxFrame)
						off += n
						loops[0].dispatch(a, f, 0)
					}
					loops[0].flushDirty()
					if c.after != nil {
						c.after()
					}
				}
			})
		}
	}
}

func itoa(n int) string {
	if n == 16 {
		return "16B"
	}
	return "256B"
}
