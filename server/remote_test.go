package server

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// recordingConn is a fakeConn that keeps what is written to it (in a reused buffer).
type recordingConn struct {
	fakeConn
	out []byte
}

func (r *recordingConn) Write(p []byte) (int, error) { r.out = append(r.out, p...); return len(p), nil }

// addRecordingConn is addConn with a recordingConn.
func addRecordingConn(t testing.TB, lp *loop, name string) *conn {
	t.Helper()
	rc := &recordingConn{}
	c := &conn{outbox: outbox{gc: rc, lp: lp}, state: stateActive}
	c.setName(name)
	id, err := lp.conns.Add(c)
	if err != nil {
		t.Fatal(err)
	}
	c.id = id
	lp.gates.open(id)
	return c
}

// captureRemote is a Remote that keeps the last record it was given (in a reused buffer)
// and refuses with err when set.
type captureRemote struct {
	last []byte
	node uint16
	n    int
	err  error
}

func (r *captureRemote) Forward(node uint16, rec []byte) error {
	if r.err != nil {
		return r.err
	}
	r.node, r.n = node, r.n+1
	r.last = append(r.last[:0], rec...)
	return nil
}

func (r *captureRemote) MaxRecord() int { return 1 << 20 }

// remoteFixture is node 1 (loops l1, connection a on loop 0, a directory that says "far"
// is connection far of node 2) and node 2 (loops l2, connection x on loop 1, which owns
// far's id), each with a captureRemote. Every loop's ring is marked armed, so that a push
// only enqueues; the test drains.
func remoteFixture(t testing.TB) (s1, s2 *Server, r1, r2 *captureRemote, l1, l2 []*loop, a, x *conn) {
	t.Helper()
	mk := func(node uint16, r *captureRemote) (*Server, []*loop) {
		s, err := New(Config{Listen: "127.0.0.1:0", NodeID: node},
			WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), WithRemote(r))
		if err != nil {
			t.Fatal(err)
		}
		var loops []*loop
		for i := range 2 {
			lp := newLoop(s, uint8(i), nil)
			lp.armed.Store(true)
			s.loops[i].Store(lp)
			loops = append(loops, lp)
		}
		s.nloops.Store(2)
		return s, loops
	}
	r1, r2 = &captureRemote{}, &captureRemote{}
	s1, l1 = mk(1, r1)
	s2, l2 = mk(2, r2)
	a = addRecordingConn(t, l1[0], "a")
	x = addRecordingConn(t, l2[1], "x")
	if err := s1.dir.Claim("far", x.id, nil); err != nil { // node 1's view of the cluster
		t.Fatal(err)
	}
	return
}

// hop hands the record r captured to s (as the cluster's subscription does) and drains
// every loop of s.
func hop(t testing.TB, r *captureRemote, s *Server, loops []*loop) codec.ErrorCode {
	t.Helper()
	code := s.DeliverRemote(r.last)
	for _, lp := range loops {
		lp.drainBatch(lp.inbox.Cap())
	}
	return code
}

// takeFrame returns the single frame written to c (flushed or still in its outbox) and
// forgets it.
func takeFrame(t testing.TB, c *conn) codec.Frame {
	t.Helper()
	c.flush()
	rc := c.gc.(*recordingConn)
	if len(rc.out) == 0 {
		t.Fatal("no frame written")
	}
	f, n, err := codec.Decode(rc.out, codec.DefaultMaxFrame)
	if err != nil || n != len(rc.out) {
		t.Fatalf("written: %d bytes, decoded %d (%v); want one frame", len(rc.out), n, err)
	}
	rc.out = rc.out[:0]
	c.pending = 0
	return f
}

// nothingWritten fails if c has been sent anything.
func nothingWritten(t testing.TB, c *conn) {
	t.Helper()
	c.flush()
	if rc := c.gc.(*recordingConn); len(rc.out) > 0 {
		t.Fatalf("got %v; want nothing", decodeOne(t, rc.out).Type)
	}
}

func dispatchOne(lp *loop, c *conn, frame []byte) {
	f, _, _ := codec.Decode(frame, codec.DefaultMaxFrame)
	lp.dispatch(c, f, 0)
	lp.flushDirty()
}

// TestRemoteRoundTrips drives SEND, SEND+ACK and REQUEST/REPLY between two nodes' loops
// through the records the Remote carries, and proves that neither side allocates.
func TestRemoteRoundTrips(t *testing.T) {
	s1, s2, r1, r2, l1, l2, a, x := remoteFixture(t)
	noAllocs := func(t *testing.T, step func()) {
		t.Helper()
		for range 100 {
			step()
		}
		if raceEnabled {
			return // sync.Pool drops items under -race
		}
		if got := testing.AllocsPerRun(500, step); got != 0 {
			t.Errorf("%v allocs per round trip; want 0", got)
		}
	}
	payload := make([]byte, 64)
	// refusedThere sends frame from a to x, and checks that x's node refuses it with code,
	// delivering nothing to x, and that a is told code with corr.
	refusedThere := func(t *testing.T, frame []byte, corr uint32, code codec.ErrorCode) {
		t.Helper()
		dispatchOne(l1[0], a, frame)
		if got := hop(t, r1, s2, l2); got != code {
			t.Fatalf("DeliverRemote = %v; want %v", got, code)
		}
		nothingWritten(t, x)
		hop(t, r2, s1, l1)
		expectCode(t, takeFrame(t, a), corr, code)
	}

	t.Run("send", func(t *testing.T) {
		send := codec.AppendSend(nil, 0, 0, "far", payload)
		noAllocs(t, func() {
			dispatchOne(l1[0], a, send)
			if r1.node != 2 {
				t.Fatalf("forwarded to node %d; want 2", r1.node)
			}
			if code := hop(t, r1, s2, l2); code != 0 {
				t.Fatalf("DeliverRemote = %v; want 0", code)
			}
			if f := takeFrame(t, x); f.Type != codec.TypeMessage {
				t.Fatalf("x got %v; want MESSAGE", f.Type)
			}
		})
	})

	t.Run("send with ack", func(t *testing.T) {
		send := codec.AppendSend(nil, codec.FlagAck, 7, "far", payload)
		noAllocs(t, func() {
			dispatchOne(l1[0], a, send)
			nothingWritten(t, a) // not before the target's node answers
			hop(t, r1, s2, l2)   // node 2 delivers and answers the outcome
			takeFrame(t, x)
			hop(t, r2, s1, l1) // node 1 answers the SEND
			if f := takeFrame(t, a); f.Type != codec.TypeOK || f.Corr != 7 {
				t.Fatalf("a got %v corr %d; want OK corr 7", f.Type, f.Corr)
			}
		})
		if a.inflight != 0 {
			t.Errorf("inflight %d; want 0", a.inflight)
		}
	})

	t.Run("request and reply", func(t *testing.T) {
		req := codec.AppendRequest(nil, 9, "far", 0, payload)
		var reply []byte
		noAllocs(t, func() {
			dispatchOne(l1[0], a, req)
			hop(t, r1, s2, l2)
			in := takeFrame(t, x)
			tok, _, _, _, _ := codec.ParseIncoming(in.Body)
			reply = codec.AppendReply(reply[:0], 0, tok, payload)
			dispatchOne(l2[1], x, reply)
			if r2.node != 1 {
				t.Fatalf("REPLY forwarded to node %d; want 1", r2.node)
			}
			hop(t, r2, s1, l1)
			if f := takeFrame(t, a); f.Type != codec.TypeResponse || f.Corr != 9 {
				t.Fatalf("a got %v corr %d; want RESPONSE corr 9", f.Type, f.Corr)
			}
		})
		if a.inflight != 0 {
			t.Errorf("inflight %d; want 0", a.inflight)
		}
	})

	t.Run("target's node not serving", func(t *testing.T) {
		// Node 2's lease may have lapsed (it was stopped, say): what node 1 forwards to
		// x is refused with NO_ROUTE, not delivered; a requester on node 2 still gets the
		// RESPONSE it waits for there.
		off := &notServing{}
		s2.serving = off
		defer func() { s2.serving = nil }()
		refusedThere(t, codec.AppendSend(nil, codec.FlagAck, 30, "far", payload), 30, codec.CodeNoRoute)
		dispatchOne(l1[0], a, codec.AppendRequest(nil, 31, "far", 0, payload))
		hop(t, r1, s2, l2)
		nothingWritten(t, x)
		hop(t, r2, s1, l1)
		expectCode(t, takeFrame(t, a), 31, codec.CodeNoRoute)
		if a.inflight != 0 {
			t.Errorf("inflight %d; want 0", a.inflight)
		}

		s2.serving = nil
		if err := s2.dir.Claim("near", a.id, nil); err != nil { // node 2's view: a is on node 1
			t.Fatal(err)
		}
		dispatchOne(l2[1], x, codec.AppendRequest(nil, 32, "near", 0, payload))
		hop(t, r2, s1, l1)
		tok, _, _, _, _ := codec.ParseIncoming(takeFrame(t, a).Body)
		s2.serving = off // the requester's node stops serving while the request is out
		dispatchOne(l1[0], a, codec.AppendReply(nil, 0, tok, []byte("late")))
		hop(t, r1, s2, l2)
		if f := takeFrame(t, x); f.Type != codec.TypeResponse || f.Corr != 32 || string(f.Body) != "late" {
			t.Fatalf("requester on the node not serving got %v corr %d %q; want RESPONSE corr 32 late", f.Type, f.Corr, f.Body)
		}
	})

	t.Run("max frames differ", func(t *testing.T) {
		// Node 2's max frame is smaller than node 1's: what node 1 accepted and node 2's
		// client could refuse is refused there with FRAME_TOO_LARGE, and so is a RESPONSE
		// node 1's requester could refuse; each side with an outcome to wait for is told.
		small := 1024
		big := make([]byte, small)
		s1.cfg.MaxFrame, s2.cfg.MaxFrame = small*4, small
		defer func() { s1.cfg.MaxFrame, s2.cfg.MaxFrame = codec.DefaultMaxFrame, codec.DefaultMaxFrame }()
		refusedThere(t, codec.AppendSend(nil, codec.FlagAck, 40, "far", big), 40, codec.CodeFrameTooLarge)
		dispatchOne(l1[0], a, codec.AppendSend(nil, 0, 0, "far", big)) // no outcome asked
		hop(t, r1, s2, l2)
		nothingWritten(t, x)
		nothingWritten(t, a)
		dispatchOne(l1[0], a, codec.AppendRequest(nil, 41, "far", 0, big))
		hop(t, r1, s2, l2)
		nothingWritten(t, x)
		hop(t, r2, s1, l1)
		expectCode(t, takeFrame(t, a), 41, codec.CodeFrameTooLarge)
		// The RESPONSE: a's node now has the smaller max frame.
		s1.cfg.MaxFrame, s2.cfg.MaxFrame = small, small*4
		dispatchOne(l1[0], a, codec.AppendRequest(nil, 42, "far", 0, payload))
		hop(t, r1, s2, l2)
		tok, _, _, _, _ := codec.ParseIncoming(takeFrame(t, x).Body)
		dispatchOne(l2[1], x, codec.AppendReply(nil, 43, tok, big))
		hop(t, r2, s1, l1)
		expectCode(t, takeFrame(t, a), 42, codec.CodeFrameTooLarge)
		hop(t, r1, s2, l2) // node 1 tells the responder
		expectCode(t, takeFrame(t, x), 43, codec.CodeFrameTooLarge)
		if a.inflight != 0 {
			t.Errorf("inflight %d; want 0", a.inflight)
		}
		if got := s1.g.breaker.Opens(); got != 0 {
			t.Errorf("node breaker opened %d times; FRAME_TOO_LARGE is no failure of the target", got)
		}
	})

	t.Run("reply from another connection", func(t *testing.T) {
		y := addRecordingConn(t, l2[0], "y")
		dispatchOne(l1[0], a, codec.AppendRequest(nil, 11, "far", 0, payload))
		hop(t, r1, s2, l2)
		tok, _, _, _, _ := codec.ParseIncoming(takeFrame(t, x).Body)
		// y forges a REPLY with x's token: node 1 refuses it, and y is told NO_ROUTE. (y is
		// counted as given an INCOMING from node 1 it has not answered, or its own node
		// would refuse the REPLY first: next subtest.)
		l2[0].countRemoteIncoming(y.id)
		dispatchOne(l2[0], y, codec.AppendReply(nil, 12, tok, []byte("forged")))
		hop(t, r2, s1, l1)
		nothingWritten(t, a) // no outcome from a forged REPLY
		hop(t, r1, s2, l2)
		if f := takeFrame(t, y); f.Type != codec.TypeError || f.Corr != 12 {
			t.Fatalf("forger got %v corr %d; want ERROR corr 12", f.Type, f.Corr)
		}
		dispatchOne(l2[1], x, codec.AppendReply(nil, 0, tok, []byte("real")))
		hop(t, r2, s1, l1)
		if f := takeFrame(t, a); f.Type != codec.TypeResponse || string(f.Body) != "real" {
			t.Fatalf("requester got %v %q; want RESPONSE real", f.Type, f.Body)
		}
	})

	t.Run("made-up token refused at the replier's node", func(t *testing.T) {
		// A connection given no INCOMING from another node has nothing to answer there: a
		// REPLY naming another node's token is refused NO_ROUTE where it is sent, and not
		// forwarded (REPLY is not rate-limited; a flood would fill the queue towards that
		// node for everyone). Each INCOMING it is given lets one REPLY through.
		z := addRecordingConn(t, l2[0], "z")
		sent := r2.n
		dispatchOne(l2[0], z, codec.AppendReply(nil, 13, 0x0001000000000009, []byte("made up")))
		expectCode(t, takeFrame(t, z), 13, codec.CodeNoRoute)
		if r2.n != sent {
			t.Fatalf("a REPLY with a made-up token was forwarded (%d records); want none", r2.n-sent)
		}
		if err := s1.dir.Claim("zed", z.id, nil); err != nil {
			t.Fatal(err)
		}
		dispatchOne(l1[0], a, codec.AppendRequest(nil, 14, "zed", 0, payload))
		hop(t, r1, s2, l2)
		tok, _, _, _, _ := codec.ParseIncoming(takeFrame(t, z).Body)
		dispatchOne(l2[0], z, codec.AppendReply(nil, 0, tok, []byte("first")))
		dispatchOne(l2[0], z, codec.AppendReply(nil, 15, tok, []byte("second"))) // one REPLY per INCOMING
		expectCode(t, takeFrame(t, z), 15, codec.CodeNoRoute)
		if r2.n != sent+1 {
			t.Fatalf("%d records forwarded for one INCOMING; want 1", r2.n-sent)
		}
		hop(t, r2, s1, l1)
		if f := takeFrame(t, a); f.Type != codec.TypeResponse || f.Corr != 14 || string(f.Body) != "first" {
			t.Fatalf("requester got %v corr %d %q; want RESPONSE corr 14 first", f.Type, f.Corr, f.Body)
		}
	})

	t.Run("failures", func(t *testing.T) {
		// The Remote's queue is full: QUEUE_FULL at once, for SEND and REQUEST alike.
		r1.err = shard.ErrBusy
		dispatchOne(l1[0], a, codec.AppendSend(nil, codec.FlagAck, 20, "far", payload))
		expectCode(t, takeFrame(t, a), 20, codec.CodeQueueFull)
		dispatchOne(l1[0], a, codec.AppendRequest(nil, 21, "far", 0, payload))
		expectCode(t, takeFrame(t, a), 21, codec.CodeQueueFull)
		// The node is not live: NO_ROUTE.
		r1.err = errors.New("node down")
		dispatchOne(l1[0], a, codec.AppendSend(nil, codec.FlagAck, 22, "far", payload))
		expectCode(t, takeFrame(t, a), 22, codec.CodeNoRoute)
		r1.err = nil
		// The target left: its node answers NO_ROUTE to the SEND+ACK and to the REQUEST.
		x2 := addRecordingConn(t, l2[1], "x2")
		if err := s1.dir.Claim("gone", x2.id, nil); err != nil {
			t.Fatal(err)
		}
		l2[1].conns.Remove(x2.id)
		l2[1].gates.shut(x2.id, gateGone)
		dispatchOne(l1[0], a, codec.AppendSend(nil, codec.FlagAck, 23, "gone", payload))
		if code := hop(t, r1, s2, l2); code != codec.CodeNoRoute {
			t.Fatalf("DeliverRemote to a gone connection = %v; want NO_ROUTE", code)
		}
		hop(t, r2, s1, l1)
		expectCode(t, takeFrame(t, a), 23, codec.CodeNoRoute)
		dispatchOne(l1[0], a, codec.AppendRequest(nil, 24, "gone", 0, payload))
		hop(t, r1, s2, l2)
		hop(t, r2, s1, l1)
		expectCode(t, takeFrame(t, a), 24, codec.CodeNoRoute)
		if a.inflight != 0 {
			t.Errorf("inflight %d; want 0", a.inflight)
		}
		// The target's node never answers a SEND+ACK (it died, or the outcome was lost):
		// TIMEOUT when RequestTimeout has passed, and a late outcome changes nothing.
		dispatchOne(l1[0], a, codec.AppendSend(nil, codec.FlagAck, 25, "far", payload))
		late := append([]byte(nil), r1.last...)
		lp := l1[0]
		// The timer was armed against the real clock, which runs ahead of this engine-less
		// wheel: advance to the tick the clock will be at when the timeout has passed.
		lp.advance(lp.tickCeil(s1.clock()+int64(s1.cfg.RequestTimeout)) + 1)
		expectCode(t, takeFrame(t, a), 25, codec.CodeTimeout)
		r1.last = late
		hop(t, r1, s2, l2) // delivered after all: x gets it, node 1 gets the outcome
		takeFrame(t, x)
		hop(t, r2, s1, l1)
		nothingWritten(t, a)
		// ACK with corr 0 wants no answer: forwarded as a plain SEND, nothing pending.
		dispatchOne(l1[0], a, codec.AppendSend(nil, codec.FlagAck, 0, "far", payload))
		if h, _, _ := parseRecord(r1.last); h.b != 0 || h.flags != 0 {
			t.Errorf("SEND+ACK with corr 0 forwarded with token %#x flags %d; want a plain SEND", h.b, h.flags)
		}
		hop(t, r1, s2, l2)
		takeFrame(t, x)
		nothingWritten(t, a)
		if a.inflight != 0 {
			t.Errorf("inflight %d after a SEND+ACK with corr 0; want 0", a.inflight)
		}
		// A record this version does not know.
		if code := s1.DeliverRemote([]byte{99}); code != codec.CodeBadFrame {
			t.Errorf("DeliverRemote(short) = %v; want BAD_FRAME", code)
		}
	})
}

func expectCode(t testing.TB, f codec.Frame, corr uint32, code codec.ErrorCode) {
	t.Helper()
	e, err := codec.ParseError(f.Body)
	if f.Type != codec.TypeError || err != nil || f.Corr != corr || e.Code != code {
		t.Fatalf("got %v corr %d code %v; want ERROR corr %d %v", f.Type, f.Corr, e.Code, corr, code)
	}
}

// notServing is a directory past its lease (servingDirectory).
type notServing struct{}

func (*notServing) Serving() bool { return false }
