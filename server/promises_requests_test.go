package server

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/shard"
)

// Promise tests for REQUEST/REPLY (docs/PROTOCOL.md 4.7-4.9): exactly one outcome per
// REQUEST, whatever happens to the responder and to the queues between the loops. Peers
// are placed on chosen loops (Loops: 2) so each test takes the path it names.

// expectNoSecondOutcome proves that requester p gets nothing more for its earlier
// REQUESTs, even after their timeouts pass: a new REQUEST (corr) with the same timeout to
// name, whose owner never replies, times out on the same loop's timer wheel later than any
// of them would have, and its TIMEOUT and a PONG must be the next two frames.
func expectNoSecondOutcome(t testing.TB, p *rawpeer.Peer, corr uint32, name string, timeoutMs uint32) {
	t.Helper()
	p.Write(codec.AppendRequest(nil, corr, name, timeoutMs, nil))
	expectOutcomes(t, p, errOutcome(corr, codec.CodeTimeout))
	pingBarrier(t, p, corr+1)
}

// TestRequestResponderGoneBeforeDelivery: the INCOMING is queued for the responder's loop,
// the responder closes, then the loop drains its ring. The requester gets exactly one
// ERROR NO_ROUTE (the responder's loop tells the requester's loop, failRequest), and no
// TIMEOUT later.
func TestRequestResponderGoneBeforeDelivery(t *testing.T) {
	// Long enough for the set-up below on a loaded machine (it takes well under a second
	// under -race with every core busy); the test waits it out once, to see that no
	// TIMEOUT follows the NO_ROUTE.
	const timeoutMs = 2000
	s := startServer(t, Config{Loops: 2, TickInterval: 10 * time.Millisecond})
	a := connectOn(t, s, "a", 0)
	registeredOn(t, s, "mute", 0)
	r := registeredOn(t, s, "svc", 1)

	release := holdRing(t, s, 1)
	a.Write(codec.AppendRequest(nil, 7, "svc", timeoutMs, []byte("q")))
	waitFor(t, "the INCOMING queued for loop 1", func() bool { return s.Capacity().RingSlots.Used == 1 })
	_ = r.Conn.Close()
	waitFor(t, "the responder's close", func() bool { return s.Stats().Names == 1 })
	release()

	f, err := a.Read()
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := codec.ParseError(f.Body); f.Type == codec.TypeError && f.Corr == 7 && e.Code == codec.CodeTimeout {
		t.Skipf("the set-up outlasted the %d ms request timeout on this machine: path not reached", timeoutMs)
	}
	e, _ := codec.ParseError(f.Body)
	if f.Type != codec.TypeError || f.Corr != 7 || e.Code != codec.CodeNoRoute || e.Reason != "responder is gone" || e.Flags&codec.ErrFlagClosing != 0 {
		t.Fatalf("got %v corr %d %+v; want ERROR NO_ROUTE corr 7 %q, connection kept", f.Type, f.Corr, e, "responder is gone")
	}
	if n := s.Capacity().RequestsInFlight; n != 0 {
		t.Fatalf("%d requests in flight after the outcome; want 0", n)
	}
	expectNoSecondOutcome(t, a, 8, "mute", timeoutMs)
	if st := s.Stats(); st.Dropped != 1 || st.Requests != 2 || st.RequestTimeouts != 1 {
		t.Fatalf("dropped %d requests %d timeouts %d; want 1, 2, 1", st.Dropped, st.Requests, st.RequestTimeouts)
	}
}

// TestRequestResponderClosingSameLoop: requester and responder share a loop. The
// requester's SENDs push the responder, which does not read, over its pending cap (it
// becomes a slow consumer, closing while it drains what it was sent) and the REQUEST that follows finds
// it closing while it still owns its name: exactly one ERROR QUEUE_FULL (a slow
// consumer's senders are told QUEUE_FULL until it is gone), no TIMEOUT later. The
// responder got the messages it could hold and the SLOW_CONSUMER error, each whole.
func TestRequestResponderClosingSameLoop(t *testing.T) {
	const maxPending = 4
	s := startServer(t, Config{Loops: 2, TickInterval: 10 * time.Millisecond, MaxPending: maxPending,
		SocketSendBuffer: 32 << 10})
	a := connectOn(t, s, "a", 0)
	registeredOn(t, s, "mute", 0)
	r := registeredOn(t, s, "svc", 0)
	r.StopReading()

	var batch []byte // r's sockets hold a fraction of one message: the 5th finds 4 waiting
	for i := range maxPending + 1 {
		batch = codec.AppendSend(batch, 0, 0, "svc", unreadPayload(byte('0'+i)))
	}
	batch = codec.AppendRequest(batch, 7, "svc", 200, []byte("q"))
	a.Write(batch)

	f := expectOutcomes(t, a, errOutcome(7, codec.CodeQueueFull))
	if e, _ := codec.ParseError(f[0].Body); e.Reason != "queue towards the target is full; retry later" {
		t.Fatalf("QUEUE_FULL reason %q", e.Reason)
	}
	expectNoSecondOutcome(t, a, 8, "mute", 200)

	for i := range maxPending {
		expectMessage(t, r, a, "a", string(unreadPayload(byte('0'+i))))
	}
	if _, e := r.ExpectError(codec.CodeSlowConsumer); e.Flags&codec.ErrFlagClosing == 0 {
		t.Fatalf("SLOW_CONSUMER without the closing flag: %+v", e)
	}
	r.ExpectClosed()
}

// unreadPayload is a 512 KiB payload starting with tag: with the server's socket send
// buffer at 32 KiB and a receiver that stopped reading (StopReading), the sockets take a
// fraction of one, so every such message stays counted against max-pending until read.
func unreadPayload(tag byte) []byte {
	p := make([]byte, 512<<10)
	p[0] = tag
	return p
}

// TestStaleReply: a REPLY with a token that is no longer (or never was) pending on the
// requester's loop is answered NO_ROUTE with the REPLY's corr. From a connection on
// another loop, the requester's loop sends that ERROR back across (errorTo). The
// requester sees nothing of it.
func TestStaleReply(t *testing.T) {
	tests := []struct {
		name  string
		rLoop int // the responder's loop; the requester is on loop 0
		token func(t *testing.T, s *Server, a, r *rawpeer.Peer) uint64
	}{
		{"timed-out/cross-loop", 1, timedOutToken},
		{"timed-out/same-loop", 0, timedOutToken},
		{"never-issued/cross-loop", 1, func(_ *testing.T, s *Server, _, _ *rawpeer.Peer) uint64 {
			return uint64(shard.MakeConnID(s.Config().NodeID, 0, 4242, 7)) // loop 0: the requester's
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, Config{Loops: 2, TickInterval: 10 * time.Millisecond})
			a := connectOn(t, s, "a", 0)
			r := registeredOn(t, s, "svc", tt.rLoop)
			tok := tt.token(t, s, a, r)

			r.Write(codec.AppendReply(nil, 6, tok, []byte("late")))
			f := expectOutcomes(t, r, errOutcome(6, codec.CodeNoRoute))
			if e, _ := codec.ParseError(f[0].Body); e.Reason != "reply token unknown or expired" || e.Flags&codec.ErrFlagClosing != 0 {
				t.Fatalf("stale REPLY answered %+v", e)
			}
			// The ERROR came from loop 0: it handled the REPLY before the PING.
			pingBarrier(t, a, 9)
			pingBarrier(t, r, 10)
			if st := s.Stats(); st.StaleReplies != 1 || st.Responses != 0 {
				t.Fatalf("stale replies %d responses %d; want 1, 0", st.StaleReplies, st.Responses)
			}
		})
	}
}

// timedOutToken has a (loop 0) REQUEST r's name with a short timeout, lets it time out
// and returns the reply token r was given.
func timedOutToken(t *testing.T, _ *Server, a, r *rawpeer.Peer) uint64 {
	t.Helper()
	a.Write(codec.AppendRequest(nil, 5, "svc", 30, []byte("q")))
	f := r.Expect(codec.TypeIncoming)
	tok, _, _, _, err := codec.ParseIncoming(f.Body)
	if err != nil {
		t.Fatal(err)
	}
	expectOutcomes(t, a, errOutcome(5, codec.CodeTimeout))
	return tok
}

// TestRequestUnroutableIncoming: a REQUEST whose INCOMING cannot be delivered gets exactly
// one ERROR, and the failure counts against the breaker: with a breaker that opens on the
// first failure, the next REQUEST is refused CIRCUIT_OPEN.
func TestRequestUnroutableIncoming(t *testing.T) {
	const ringSize = 4
	tests := []struct {
		name string
		want codec.ErrorCode
		// provoke makes the REQUEST a (loop 0) → "svc" corr 7 fail; r owns "svc" on loop rLoop.
		rLoop   int
		provoke func(t *testing.T, s *Server, a, r *rawpeer.Peer)
	}{
		{name: "ring-full/cross-loop", want: codec.CodeQueueFull, rLoop: 1,
			provoke: func(t *testing.T, s *Server, a, r *rawpeer.Peer) {
				release := holdRing(t, s, 1)
				for i := 1; i <= ringSize; i++ {
					a.Write(codec.AppendSend(nil, codec.FlagAck, uint32(100+i), "svc", []byte("m")))
					expectOutcomes(t, a, outcome{typ: codec.TypeOK, corr: uint32(100 + i)})
				}
				a.Write(codec.AppendRequest(nil, 7, "svc", 0, nil))
				expectOutcomes(t, a, errOutcome(7, codec.CodeQueueFull))
				release()
				// r gets the messages that fit, and nothing else: no INCOMING.
				for range ringSize {
					expectMessage(t, r, a, "a", "m")
				}
				pingBarrier(t, r, 50)
			}},
		{name: "responder-gone/cross-loop", want: codec.CodeNoRoute, rLoop: 1,
			provoke: func(t *testing.T, s *Server, a, r *rawpeer.Peer) {
				release := holdRing(t, s, 1)
				a.Write(codec.AppendRequest(nil, 7, "svc", 0, nil))
				waitFor(t, "the INCOMING queued", func() bool { return s.Capacity().RingSlots.Used == 1 })
				_ = r.Conn.Close()
				waitFor(t, "the responder's close", func() bool { return s.Stats().Names == 1 })
				release()
				expectOutcomes(t, a, errOutcome(7, codec.CodeNoRoute))
			}},
		{name: "slow-consumer/same-loop", want: codec.CodeQueueFull, rLoop: 0,
			provoke: func(t *testing.T, s *Server, a, r *rawpeer.Peer) {
				r.StopReading()
				var batch []byte // 4 messages wait for r (MaxPending 4): the REQUEST finds it full
				for i := range 4 {
					batch = codec.AppendSend(batch, 0, 0, "svc", unreadPayload(byte('0'+i)))
				}
				a.Write(codec.AppendRequest(batch, 7, "svc", 0, nil))
				expectOutcomes(t, a, errOutcome(7, codec.CodeQueueFull))
			}},
		{name: "responder-slow-closing/same-loop", want: codec.CodeQueueFull, rLoop: 0,
			provoke: func(t *testing.T, s *Server, a, r *rawpeer.Peer) {
				r.StopReading()
				var batch []byte // the 5th SEND makes r a slow consumer; the REQUEST finds it closing
				for i := range 5 {
					batch = codec.AppendSend(batch, 0, 0, "svc", unreadPayload(byte('0'+i)))
				}
				a.Write(codec.AppendRequest(batch, 7, "svc", 0, nil))
				expectOutcomes(t, a, errOutcome(7, codec.CodeQueueFull))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, withLimits(Config{Loops: 2, RingSize: ringSize, MaxPending: 4,
				TickInterval: 10 * time.Millisecond, SocketSendBuffer: 32 << 10}, breakerOnFirstFailure()))
			a := connectOn(t, s, "a", 0)
			registeredOn(t, s, "mute", 0)
			r := registeredOn(t, s, "svc", tt.rLoop)
			tt.provoke(t, s, a, r)
			expectBreakerOpen(t, a, 8, "mute")
			pingBarrier(t, a, 9) // and nothing else for corr 7
		})
	}
}

// TestReplyIntoFullRing: the responder lives on another loop than the requester, and the
// requester's loop's ring is full when the REPLY comes. The responder is told QUEUE_FULL
// with its REPLY's corr; the requester gets exactly one outcome, TIMEOUT, and never the
// RESPONSE.
func TestReplyIntoFullRing(t *testing.T) {
	const ringSize = 4
	s := startServer(t, Config{Loops: 2, RingSize: ringSize, TickInterval: 10 * time.Millisecond})
	a := connectOn(t, s, "a", 0)
	sink := registeredOn(t, s, "sink", 0)
	r := registeredOn(t, s, "svc", 1)

	a.Write(codec.AppendRequest(nil, 7, "svc", 300, []byte("q")))
	f := r.Expect(codec.TypeIncoming)
	tok, _, _, _, err := codec.ParseIncoming(f.Body)
	if err != nil {
		t.Fatal(err)
	}
	release := holdRing(t, s, 0)
	for i := 1; i <= ringSize; i++ { // fill loop 0's ring from loop 1
		r.Write(codec.AppendSend(nil, codec.FlagAck, uint32(100+i), "sink", []byte("fill")))
		expectOutcomes(t, r, outcome{typ: codec.TypeOK, corr: uint32(100 + i)})
	}
	r.Write(codec.AppendReply(nil, 9, tok, []byte("answer")))
	expectOutcomes(t, r, errOutcome(9, codec.CodeQueueFull))

	expectOutcomes(t, a, errOutcome(7, codec.CodeTimeout))
	release()
	for range ringSize {
		expectMessage(t, sink, r, "svc", "fill")
	}
	// Loop 0 drained the whole ring (and wrote any RESPONSE) before it handles this PING.
	pingBarrier(t, a, 8)
	if st := s.Stats(); st.Responses != 0 || st.RequestTimeouts != 1 {
		t.Fatalf("responses %d timeouts %d; want 0, 1", st.Responses, st.RequestTimeouts)
	}
}

// TestInflightCapFreesOnOutcome: past MaxPending requests in flight a REQUEST gets
// QUEUE_FULL ("too many requests in flight"); each outcome, across loops, frees a slot.
// (The request table's own bound, 16M entries per loop, cannot be reached from a test:
// connections × MaxPending stay far below it.)
func TestInflightCapFreesOnOutcome(t *testing.T) {
	tests := []struct {
		name    string
		timeout uint32 // ms for the first two requests; 0: answered
	}{
		{"response-frees", 0},
		{"timeout-frees", 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, Config{Loops: 2, MaxPending: 2, TickInterval: 10 * time.Millisecond})
			a := connectOn(t, s, "a", 0)
			r := registeredOn(t, s, "svc", 1)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 60000
			}
			// One write, one read: no timeout can free a slot before the third REQUEST.
			batch := codec.AppendRequest(nil, 1, "svc", timeout, []byte("1"))
			batch = codec.AppendRequest(batch, 2, "svc", timeout, []byte("2"))
			a.Write(codec.AppendRequest(batch, 3, "svc", timeout, []byte("3")))
			f := expectOutcomes(t, a, errOutcome(3, codec.CodeQueueFull))
			if e, _ := codec.ParseError(f[0].Body); e.Reason != "too many requests in flight on this connection" {
				t.Fatalf("reason %q", e.Reason)
			}
			var toks []uint64
			for range 2 {
				f := r.Expect(codec.TypeIncoming)
				tok, _, _, _, _ := codec.ParseIncoming(f.Body)
				toks = append(toks, tok)
			}
			if tt.timeout == 0 {
				r.Write(codec.AppendReply(nil, 0, toks[0], []byte("r1")))
				r.Write(codec.AppendReply(nil, 0, toks[1], []byte("r2")))
				got := expectOutcomes(t, a, outcome{typ: codec.TypeResponse, corr: 1}, outcome{typ: codec.TypeResponse, corr: 2})
				if string(got[0].Body) != "r1" || string(got[1].Body) != "r2" {
					t.Fatalf("RESPONSE bodies %q %q", got[0].Body, got[1].Body)
				}
			} else {
				// Both expire in the same tick, in either order.
				seen := map[uint32]int{}
				for range 2 {
					f, _ := a.ExpectError(codec.CodeTimeout)
					seen[f.Corr]++
				}
				if seen[1] != 1 || seen[2] != 1 {
					t.Fatalf("TIMEOUTs by corr %v; want one each for 1 and 2", seen)
				}
			}
			// Both slots are free again.
			a.Write(codec.AppendRequest(nil, 4, "svc", 60000, []byte("4")))
			a.Write(codec.AppendRequest(nil, 5, "svc", 60000, []byte("5")))
			for _, corr := range []uint32{4, 5} {
				f := r.Expect(codec.TypeIncoming)
				tok, _, _, payload, _ := codec.ParseIncoming(f.Body)
				if string(payload) != string(rune('0'+corr)) {
					t.Fatalf("INCOMING payload %q; want %d", payload, corr)
				}
				r.Write(codec.AppendReply(nil, 0, tok, nil))
				expectOutcomes(t, a, outcome{typ: codec.TypeResponse, corr: corr})
			}
		})
	}
}
