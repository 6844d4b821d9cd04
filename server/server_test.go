package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/internal/wait"
)

// startServer is internal/testserver.Start, which these tests cannot import (it imports
// server: an import cycle). Keep the two alike: 127.0.0.1:0, two loops unless set, logs
// discarded, Shutdown when the test ends.
//
// A loop-lag budget left at zero becomes an hour: on a loaded machine (CI, -race, a CPU
// hog) loop lag could otherwise reach the traffic zone's RED and shed frames in a test of
// some other mechanism. Tests of the loop-lag input set a budget of their own.
func startServer(t testing.TB, cfg Config, opts ...Option) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	return startServerWith(t, cfg, (*Server).Start, opts...)
}

// startServerWith is startServer with start (Start, or StartListener on a listener the
// test made) as the way the server begins to listen.
func startServerWith(t testing.TB, cfg Config, start func(*Server) error, opts ...Option) *Server {
	t.Helper()
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	if cfg.LoopLagBudget == 0 {
		cfg.LoopLagBudget = time.Hour
	}
	s, err := New(cfg, append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := start(s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

// waitFor is wait.For (polls cond until it holds or wait.Deadline passes).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	wait.For(t, what, cond)
}

// sendUntilError sends acknowledged SENDs of payload to name, one at a time, until the
// answer is an ERROR, and returns its code (0 if none came in max messages).
func sendUntilError(t testing.TB, p *rawpeer.Peer, name string, payload []byte, max int) codec.ErrorCode {
	t.Helper()
	for i := 1; i <= max; i++ {
		p.Write(codec.AppendSend(nil, codec.FlagAck, uint32(i), name, payload))
		f, err := p.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == codec.TypeError {
			e, _ := codec.ParseError(f.Body)
			return e.Code
		}
	}
	return 0
}

// registered connects a peer named name that owns the name name.
func registered(t testing.TB, s *Server, name string) *rawpeer.Peer {
	t.Helper()
	p := connect(t, s, name)
	p.Write(codec.AppendName(nil, codec.TypeRegister, 1, name))
	p.Expect(codec.TypeOK)
	return p
}

func connect(t testing.TB, s *Server, name string) *rawpeer.Peer {
	t.Helper()
	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello(name, s.cfg.Token)
	return p
}

func TestHandshakeEchoPing(t *testing.T) {
	s := startServer(t, Config{ServerID: "node-a", IdleTimeout: DefaultIdleTimeout})
	p := rawpeer.Dial(t, s.Addr().String())
	w := p.Hello("alice", "")
	if w.Version != codec.Version || string(w.ServerID) != "node-a" || w.ConnID == 0 ||
		w.MaxFrame != codec.DefaultMaxFrame || w.MaxPending != DefaultMaxPending || w.PingIntervalMs != 30000 {
		t.Fatalf("WELCOME = %+v", w)
	}
	p.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 7, []byte("hello")))
	f := p.Expect(codec.TypeEchoReply)
	if f.Corr != 7 || string(f.Body) != "hello" {
		t.Fatalf("ECHO_REPLY corr %d body %q; want 7 hello", f.Corr, f.Body)
	}
	p.Write(codec.AppendFrame(nil, codec.TypePing, 0, 8, []byte{1, 2}))
	if f := p.Expect(codec.TypePong); f.Corr != 8 || !bytes.Equal(f.Body, []byte{1, 2}) {
		t.Fatalf("PONG corr %d body %v", f.Corr, f.Body)
	}
}

func TestPipelinedEchoManyFrames(t *testing.T) {
	s := startServer(t, Config{FramesPerWake: 16}) // small cap exercises the self-Wake path
	p := connect(t, s, "pipe")
	const n = 2000
	var batch []byte
	for i := 1; i <= n; i++ {
		batch = codec.AppendFrame(batch, codec.TypeEcho, 0, uint32(i), []byte("x"))
	}
	p.Write(batch)
	for i := 1; i <= n; i++ {
		if f := p.Expect(codec.TypeEchoReply); f.Corr != uint32(i) {
			t.Fatalf("reply %d has corr %d; replies must keep order", i, f.Corr)
		}
	}
}

func TestOneByteAtATime(t *testing.T) {
	s := startServer(t, Config{})
	p := rawpeer.Dial(t, s.Addr().String())
	frames := codec.AppendHello(nil, 1, codec.Version, "slow", "")
	frames = codec.AppendFrame(frames, codec.TypeEcho, 0, 2, []byte("drip"))
	for i := range frames {
		p.Write(frames[i : i+1])
	}
	p.Expect(codec.TypeWelcome)
	if f := p.Expect(codec.TypeEchoReply); string(f.Body) != "drip" {
		t.Fatalf("echo body %q; want drip", f.Body)
	}
}

func TestRegisterSendSameAndCrossLoop(t *testing.T) {
	s := startServer(t, Config{Loops: 2})
	// Three receivers on (with two loops and least-connections balancing) both loops.
	var peers []*rawpeer.Peer
	for _, name := range []string{"r0", "r1", "r2"} {
		p := connect(t, s, name)
		p.Write(codec.AppendName(nil, codec.TypeRegister, 1, name))
		if f := p.Expect(codec.TypeOK); f.Corr != 1 {
			t.Fatalf("OK corr %d; want 1", f.Corr)
		}
		peers = append(peers, p)
	}
	sender := connect(t, s, "sender")
	loops := map[int]bool{}
	for i, p := range peers {
		loops[int(uint8(p.ConnID>>40))] = true
		name := []string{"r0", "r1", "r2"}[i]
		sender.Write(codec.AppendSend(nil, codec.FlagAck, uint32(10+i), name, []byte("payload-"+name)))
		if f := sender.Expect(codec.TypeOK); f.Corr != uint32(10+i) {
			t.Fatalf("ack corr %d; want %d", f.Corr, 10+i)
		}
		f := p.Expect(codec.TypeMessage)
		from, fromName, payload, err := codec.ParseMessage(f.Body)
		if err != nil || from != sender.ConnID || string(fromName) != "sender" || string(payload) != "payload-"+name {
			t.Fatalf("MESSAGE from %x %q payload %q err %v", from, fromName, payload, err)
		}
	}
	if len(loops) < 2 {
		t.Fatalf("receivers all on one loop %v; the test needs both", loops)
	}
	if st := s.Stats(); st.Sent != 3 || st.Names != 3 {
		t.Fatalf("stats sent %d names %d; want 3, 3", st.Sent, st.Names)
	}
}

func TestNameTakenAndReleasedOnClose(t *testing.T) {
	s := startServer(t, Config{})
	a := connect(t, s, "a")
	a.Write(codec.AppendName(nil, codec.TypeRegister, 1, "svc"))
	a.Expect(codec.TypeOK)
	b := connect(t, s, "b")
	b.Write(codec.AppendName(nil, codec.TypeRegister, 2, "svc"))
	if _, e := b.ExpectError(codec.CodeNameTaken); e.Flags&codec.ErrFlagClosing != 0 {
		t.Fatal("NAME_TAKEN must not close the connection")
	}
	b.Write(codec.AppendName(nil, codec.TypeUnregister, 3, "svc"))
	b.ExpectError(codec.CodeNotOwner)
	_ = a.Conn.Close()
	waitFor(t, "name release", func() bool { return s.Stats().Names == 0 })
	b.Write(codec.AppendName(nil, codec.TypeRegister, 4, "svc"))
	b.Expect(codec.TypeOK)
	b.Write(codec.AppendName(nil, codec.TypeUnregister, 5, "svc"))
	b.Expect(codec.TypeOK)
	waitFor(t, "unregister", func() bool { return s.Stats().Names == 0 })
}

func TestSendNoRoute(t *testing.T) {
	s := startServer(t, Config{})
	p := connect(t, s, "p")
	p.Write(codec.AppendSend(nil, 0, 0, "nobody", []byte("lost"))) // corr 0: counted, silent
	p.Write(codec.AppendSend(nil, codec.FlagAck, 9, "nobody", []byte("x")))
	if f, _ := p.ExpectError(codec.CodeNoRoute); f.Corr != 9 {
		t.Fatalf("NO_ROUTE corr %d; want 9", f.Corr)
	}
	if st := s.Stats(); st.NoRoute != 2 || st.Errors[codec.CodeNoRoute] != 2 {
		t.Fatalf("no-route counted %d/%d; want 2", st.NoRoute, st.Errors[codec.CodeNoRoute])
	}
}

// responder answers every INCOMING with "re:" + payload.
func respondOnce(t *testing.T, p *rawpeer.Peer) (token uint64) {
	t.Helper()
	f := p.Expect(codec.TypeIncoming)
	tok, _, _, payload, err := codec.ParseIncoming(f.Body)
	if err != nil {
		t.Fatalf("bad INCOMING: %v", err)
	}
	p.Write(codec.AppendReply(nil, 0, tok, append([]byte("re:"), payload...)))
	return tok
}

func TestRequestReplyAllLoopPairs(t *testing.T) {
	s := startServer(t, Config{Loops: 2})
	var svcs []*rawpeer.Peer
	for _, name := range []string{"svc0", "svc1"} {
		p := connect(t, s, name)
		p.Write(codec.AppendName(nil, codec.TypeRegister, 1, name))
		p.Expect(codec.TypeOK)
		svcs = append(svcs, p)
	}
	callers := []*rawpeer.Peer{connect(t, s, "c0"), connect(t, s, "c1")}
	for ci, c := range callers {
		for si, svc := range svcs {
			corr := uint32(100*ci + si + 1)
			c.Write(codec.AppendRequest(nil, corr, []string{"svc0", "svc1"}[si], 0, []byte("q")))
			respondOnce(t, svc)
			f := c.Expect(codec.TypeResponse)
			if f.Corr != corr || string(f.Body) != "re:q" {
				t.Fatalf("RESPONSE corr %d body %q; want %d re:q", f.Corr, f.Body, corr)
			}
		}
	}
	if st := s.Stats(); st.Requests != 4 || st.Responses != 4 {
		t.Fatalf("requests %d responses %d; want 4, 4", st.Requests, st.Responses)
	}
}

func TestRequestTimeoutAndStaleReply(t *testing.T) {
	s := startServer(t, Config{TickInterval: 10 * time.Millisecond})
	svc := connect(t, s, "svc")
	svc.Write(codec.AppendName(nil, codec.TypeRegister, 1, "slow"))
	svc.Expect(codec.TypeOK)
	c := connect(t, s, "c")
	c.Write(codec.AppendRequest(nil, 5, "slow", 50, []byte("q")))
	f := svc.Expect(codec.TypeIncoming)
	tok, _, _, _, _ := codec.ParseIncoming(f.Body)
	if ef, _ := c.ExpectError(codec.CodeTimeout); ef.Corr != 5 {
		t.Fatalf("TIMEOUT corr %d; want 5", ef.Corr)
	}
	// The late reply finds a stale token: the responder hears NO_ROUTE, the requester nothing.
	svc.Write(codec.AppendReply(nil, 6, tok, []byte("late")))
	if ef, _ := svc.ExpectError(codec.CodeNoRoute); ef.Corr != 6 {
		t.Fatalf("stale REPLY answered with corr %d; want 6", ef.Corr)
	}
	c.Write(codec.AppendFrame(nil, codec.TypePing, 0, 7, nil))
	if f := c.Expect(codec.TypePong); f.Corr != 7 {
		t.Fatalf("requester got corr %d after its timeout; want only the PONG", f.Corr)
	}
	if st := s.Stats(); st.RequestTimeouts != 1 || st.StaleReplies != 1 {
		t.Fatalf("timeouts %d stale %d; want 1, 1", st.RequestTimeouts, st.StaleReplies)
	}
}

func TestRequestResponderLeaves(t *testing.T) {
	s := startServer(t, Config{TickInterval: 10 * time.Millisecond})
	svc := connect(t, s, "svc")
	svc.Write(codec.AppendName(nil, codec.TypeRegister, 1, "gone"))
	svc.Expect(codec.TypeOK)
	c := connect(t, s, "c")
	c.Write(codec.AppendRequest(nil, 3, "gone", 100, nil))
	svc.Expect(codec.TypeIncoming)
	_ = svc.Conn.Close()
	c.ExpectError(codec.CodeTimeout) // exactly one outcome, even though nobody can answer
}

func TestReplyBadToken(t *testing.T) {
	s := startServer(t, Config{})
	p := connect(t, s, "p")
	p.Write(codec.AppendReply(nil, 4, 0xdead_beef_0000_0001, nil))
	if f, _ := p.ExpectError(codec.CodeNoRoute); f.Corr != 4 {
		t.Fatalf("corr %d; want 4", f.Corr)
	}
}

// TestBadInput sends each kind of bad input on its own connection and checks the ERROR
// code, the close, and that a bystander connection keeps working.
func TestBadInput(t *testing.T) {
	s := startServer(t, Config{Token: "sesame"})
	bystander := connect(t, s, "bystander")
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	tests := []struct {
		name  string
		hello bool // complete the handshake first
		send  []byte
		code  codec.ErrorCode
	}{
		{"garbage", false, []byte("GET / HTTP/1.1\r\n\r\n"), codec.CodeFrameTooLarge},
		{"length-below-header", false, append(u32(3), 1, 2, 3), codec.CodeBadFrame},
		{"length-over-max", true, u32(codec.DefaultMaxFrame + 1), codec.CodeFrameTooLarge},
		{"length-over-handshake-max", false, u32(4096), codec.CodeFrameTooLarge},
		{"unknown-type", true, codec.AppendFrame(nil, 0x42, 0, 1, nil), codec.CodeUnknownType},
		{"server-type-from-client", true, codec.AppendFrame(nil, codec.TypeWelcome, 0, 1, nil), codec.CodeUnknownType},
		{"frame-before-hello", false, codec.AppendFrame(nil, codec.TypeEcho, 0, 1, nil), codec.CodeHelloRequired},
		{"wrong-token", false, codec.AppendHello(nil, 1, codec.Version, "x", "wrong"), codec.CodeUnauthorized},
		{"wrong-version", false, codec.AppendHello(nil, 1, 99, "x", "sesame"), codec.CodeUnsupportedVersion},
		{"malformed-hello", false, codec.AppendFrame(nil, codec.TypeHello, 0, 1, []byte{0}), codec.CodeBadFrame},
		{"second-hello", true, codec.AppendHello(nil, 1, codec.Version, "x", "sesame"), codec.CodeBadFrame},
		{"malformed-send", true, codec.AppendFrame(nil, codec.TypeSend, 0, 1, []byte{9, 'a'}), codec.CodeBadFrame},
		{"empty-register", true, codec.AppendFrame(nil, codec.TypeRegister, 0, 1, nil), codec.CodeBadFrame},
		{"request-corr-0", true, codec.AppendRequest(nil, 0, "x", 0, nil), codec.CodeBadFrame},
		// corr 1 is fine; the body stops after the name, without the timeout field.
		{"request-no-timeout", true, codec.AppendFrame(nil, codec.TypeRequest, 0, 1, []byte{1, 'x'}), codec.CodeBadFrame},
		{"malformed-reply", true, codec.AppendFrame(nil, codec.TypeReply, 0, 1, []byte{1}), codec.CodeBadFrame},
		{"goodbye-with-body", true, codec.AppendFrame(nil, codec.TypeGoodbye, 0, 0, []byte("bye")), codec.CodeBadFrame},
	}
	// The reason text must say what was wrong, where two faults share a code.
	reasons := map[string]string{
		"request-corr-0":     "REQUEST corr must not be 0",
		"request-no-timeout": "malformed REQUEST body",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := rawpeer.Dial(t, s.Addr().String())
			if tt.hello {
				p.Hello("bad", "sesame")
			}
			p.Write(tt.send)
			_, e := p.ExpectError(tt.code)
			if want, ok := reasons[tt.name]; ok && e.Reason != want {
				t.Errorf("reason %q; want %q", e.Reason, want)
			}
			if e.Flags&codec.ErrFlagClosing == 0 {
				t.Errorf("ERROR %v without the closing flag", e.Code)
			}
			p.ExpectClosed()
			bystander.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 1, []byte("still here")))
			bystander.Expect(codec.TypeEchoReply)
		})
	}
	waitFor(t, "bad connections to close", func() bool { return s.Stats().Connections == 1 })
}

func TestTruncatedFrameThenClose(t *testing.T) {
	s := startServer(t, Config{})
	p := connect(t, s, "p")
	full := codec.AppendFrame(nil, codec.TypeEcho, 0, 1, make([]byte, 100))
	p.Write(full[:50])
	_ = p.Conn.Close()
	waitFor(t, "close", func() bool { return s.Stats().Connections == 0 })
	connect(t, s, "after") // the server carries on
}

func TestHandshakeTimeout(t *testing.T) {
	s := startServer(t, Config{HandshakeTimeout: 50 * time.Millisecond, TickInterval: 10 * time.Millisecond})
	p := rawpeer.Dial(t, s.Addr().String())
	p.ExpectError(codec.CodeHandshakeTimeout)
	p.ExpectClosed()
	if st := s.Stats(); st.HandshakeTimeouts != 1 {
		t.Fatalf("handshake timeouts %d; want 1", st.HandshakeTimeouts)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := startServer(t, Config{IdleTimeout: 150 * time.Millisecond, TickInterval: 10 * time.Millisecond})
	p := connect(t, s, "idle")
	p.ExpectError(codec.CodeTimeout)
	p.ExpectClosed()
}

// TestIdleTimeoutOff checks that IdleTimeout 0 means off: WELCOME announces ping interval
// 0, and a connection that never sends anything stays open across many ticks.
func TestIdleTimeoutOff(t *testing.T) {
	s := startServer(t, Config{IdleTimeout: 0, TickInterval: 5 * time.Millisecond})
	if got := s.Config().IdleTimeout; got != 0 {
		t.Fatalf("effective IdleTimeout = %v; want 0 (off)", got)
	}
	p := rawpeer.Dial(t, s.Addr().String())
	if w := p.Hello("quiet", ""); w.PingIntervalMs != 0 {
		t.Fatalf("WELCOME ping interval = %d ms; want 0", w.PingIntervalMs)
	}
	// A bounded wait of 60 ticks: nothing may arrive and the connection must stay open.
	// (With an idle timeout of even one tick the server would send ERROR TIMEOUT here.)
	if f, err := p.ReadTimeout(300 * time.Millisecond); err == nil {
		t.Fatalf("got %v from a silent connection; want nothing", f.Type)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("read: %v; want a read timeout (connection still open)", err)
	}
	p.Write(codec.AppendFrame(nil, codec.TypePing, 0, 1, nil))
	p.Expect(codec.TypePong)
	if st := s.Stats(); st.IdleTimeouts != 0 || st.Connections != 1 {
		t.Fatalf("idle timeouts %d, connections %d; want 0, 1", st.IdleTimeouts, st.Connections)
	}
}

func TestConnectionLimitBusy(t *testing.T) {
	s := startServer(t, Config{MaxConnections: 2})
	connect(t, s, "a")
	connect(t, s, "b")
	p := rawpeer.Dial(t, s.Addr().String())
	_, e := p.ExpectError(codec.CodeBusy)
	if e.RetryAfterMs == 0 || e.Flags&codec.ErrFlagClosing == 0 {
		t.Fatalf("BUSY %+v; want retry-after and the closing flag", e)
	}
	p.ExpectClosed()
	if st := s.Stats(); st.Refused != 1 || st.Connections != 2 {
		t.Fatalf("refused %d conns %d; want 1, 2", st.Refused, st.Connections)
	}
}

func TestSlowConsumer(t *testing.T) {
	// A slow consumer keeps its name until it has read what it was sent or the
	// slow-consumer timeout has passed without it reading: short here.
	s := startServer(t, Config{MaxPending: 50, MaxPendingBytes: 64 << 10,
		SlowConsumerTimeout: 200 * time.Millisecond, TickInterval: 10 * time.Millisecond})
	registered(t, s, "sink")
	// The sink never reads again. A sender floods it with acknowledged SENDs until the
	// server gives up on the sink.
	src := connect(t, s, "src")
	// QUEUE_FULL when the cap trips (and while the sink is closing); NO_ROUTE once it is gone.
	switch code := sendUntilError(t, src, "sink", make([]byte, 16<<10), 5000); code {
	case codec.CodeQueueFull, codec.CodeNoRoute:
	case 0:
		t.Fatal("5000 messages to a sink that never reads were all accepted")
	default:
		t.Fatalf("unexpected %v", code)
	}
	waitFor(t, "slow consumer close", func() bool { return s.Stats().SlowConsumers == 1 && s.Stats().Names == 0 })
}

func TestShutdownSendsGoAway(t *testing.T) {
	cfg := Config{Listen: "127.0.0.1:0", Loops: 2}
	s, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello("x", "")
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	p.Expect(codec.TypeGoAway)
	p.ExpectClosed()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != ErrServerClosed {
		t.Fatalf("Start after Shutdown = %v; want ErrServerClosed", err)
	}
}

func TestClientNeverReadsItsAnswers(t *testing.T) {
	s := startServer(t, Config{MaxPendingBytes: 256 << 10})
	p := connect(t, s, "deaf")
	bystander := connect(t, s, "bystander")
	frame := codec.AppendFrame(nil, codec.TypeEcho, 0, 1, make([]byte, 32<<10))
	// Write echoes without reading until the server closes us (bounded by 64 MiB).
	closed := false
	for i := 0; i < 2048 && !closed; i++ {
		_ = p.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := p.Conn.Write(frame); err != nil {
			closed = true
		}
		if s.Stats().SlowConsumers > 0 {
			closed = true
		}
	}
	waitFor(t, "slow consumer", func() bool { return s.Stats().SlowConsumers == 1 })
	bystander.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 1, []byte("ok")))
	bystander.Expect(codec.TypeEchoReply)
}

func TestRingFullIsQueueFull(t *testing.T) {
	s, loops := newTestLoops(t, 2)
	_ = s
	a, _ := addConn(t, loops[0], "a")
	x, _ := addConn(t, loops[1], "x")
	mustRegister(t, s, "x", x)
	loops[1].armed.Store(true) // no engine: nothing drains the ring
	codes := map[codec.ErrorCode]int{}
	for i := 0; i < loops[1].inbox.Cap()+10; i++ {
		codes[loops[0].route(x.id, codec.TypeMessage, a, 0, []byte("m"))]++
	}
	if codes[0] != loops[1].inbox.Cap() || codes[codec.CodeQueueFull] != 10 {
		t.Fatalf("route outcomes %v; want %d accepted and 10 QUEUE_FULL", codes, loops[1].inbox.Cap())
	}
}

func TestSendDeliveredFrameTooLarge(t *testing.T) {
	s := startServer(t, Config{MaxFrame: 4096})
	registered(t, s, "r")
	p := connect(t, s, "a-long-sender-name")
	// The SEND itself fits; the MESSAGE (sender id and name instead of "r") would not.
	payload := make([]byte, 4096-codec.MinLen-2-2)
	p.Write(codec.AppendSend(nil, 0, 3, "r", payload))
	if f, _ := p.ExpectError(codec.CodeFrameTooLarge); f.Corr != 3 {
		t.Fatalf("corr %d; want 3", f.Corr)
	}
	p.Write(codec.AppendRequest(nil, 4, "r", 0, payload[:len(payload)-4]))
	p.ExpectError(codec.CodeFrameTooLarge)
	p.Write(codec.AppendFrame(nil, codec.TypePing, 0, 5, nil)) // still open
	p.Expect(codec.TypePong)
}

func TestDrain(t *testing.T) {
	s := startServer(t, Config{Peers: "10.0.0.2:7400, 10.0.0.3:7400"})
	var peers []*rawpeer.Peer
	for i := 0; i < 6; i++ {
		peers = append(peers, connect(t, s, "p"))
	}
	if ok, _ := s.Ready(); !ok {
		t.Fatal("not ready before the drain")
	}
	done := make(chan error, 1)
	go func() { done <- s.Drain(context.Background(), 300*time.Millisecond) }()
	for _, p := range peers {
		f := p.Expect(codec.TypeGoAway)
		g, err := codec.ParseGoAway(f.Body)
		if err != nil || len(g.Addrs) != 2 || g.Addrs[1] != "10.0.0.3:7400" {
			t.Fatalf("GOAWAY %+v, %v; want the two peers", g, err)
		}
	}
	if ok, why := s.Ready(); ok || why != "draining" {
		t.Fatalf("Ready during drain = %v %q; want false, draining", ok, why)
	}
	late := rawpeer.Dial(t, s.Addr().String()) // told, not reset
	if _, e := late.ExpectError(codec.CodeShuttingDown); len(e.Addrs) != 2 {
		t.Fatalf("SHUTTING_DOWN without the peers: %+v", e)
	}
	for _, p := range peers {
		p.ExpectClosed()
	}
	if err := <-done; err != nil {
		t.Fatalf("Drain = %v", err)
	}
	if st := s.Stats(); st.Connections != 0 {
		t.Fatalf("%d connections after the drain", st.Connections)
	}
}

// TestHelloPipelinedWithLargeFrame: the small pre-handshake frame limit ends with the
// HELLO, even when the next frame arrives in the same read.
func TestHelloPipelinedWithLargeFrame(t *testing.T) {
	s := startServer(t, Config{})
	p := rawpeer.Dial(t, s.Addr().String())
	b := codec.AppendHello(nil, 1, codec.Version, "eager", "")
	b = codec.AppendFrame(b, codec.TypeEcho, 0, 2, make([]byte, 8<<10))
	p.Write(b)
	p.Expect(codec.TypeWelcome)
	if f := p.Expect(codec.TypeEchoReply); len(f.Body) != 8<<10 {
		t.Fatalf("echo body %d bytes", len(f.Body))
	}
}

// TestDrainSuggestsLivePeers: SetPeers (a cluster's live nodes) replaces the configured
// peers in GOAWAY, in refusals at accept and in the SHUTTING_DOWN of a HELLO that arrives
// during the drain, which also says TRY_OTHER like the refusal at accept.
func TestDrainSuggestsLivePeers(t *testing.T) {
	s := startServer(t, Config{Peers: "10.0.0.2:7400"})
	live := []string{"10.0.0.7:7400", "10.0.0.8:7400", "10.0.0.9:7400"}
	s.SetPeers(live)
	active := connect(t, s, "a")
	silent := rawpeer.Dial(t, s.Addr().String()) // in its handshake when the drain starts
	waitFor(t, "the silent connection enrolled", func() bool { return s.Stats().Connections == 2 })
	done := make(chan error, 1)
	go func() { done <- s.Drain(context.Background(), 300*time.Millisecond) }()
	g, err := codec.ParseGoAway(active.Expect(codec.TypeGoAway).Body)
	if err != nil || !slices.Equal(g.Addrs, live) {
		t.Fatalf("GOAWAY %+v, %v; want the live peers %v", g, err, live)
	}
	silent.Write(codec.AppendHello(nil, 1, codec.Version, "late-hello", ""))
	if _, e := silent.ExpectError(codec.CodeShuttingDown); !slices.Equal(e.Addrs, live) ||
		e.Flags&codec.ErrFlagTryOther == 0 || e.Flags&codec.ErrFlagReconnect == 0 {
		t.Fatalf("HELLO during the drain: %+v; want SHUTTING_DOWN, RECONNECT|TRY_OTHER, the live peers", e)
	}
	late := rawpeer.Dial(t, s.Addr().String())
	if _, e := late.ExpectError(codec.CodeShuttingDown); !slices.Equal(e.Addrs, live) {
		t.Fatalf("refused at accept with %+v; want the live peers", e)
	}
	s.SetPeers(nil) // back to the configured list
	late2 := rawpeer.Dial(t, s.Addr().String())
	if _, e := late2.ExpectError(codec.CodeShuttingDown); !slices.Equal(e.Addrs, []string{"10.0.0.2:7400"}) {
		t.Fatalf("after SetPeers(nil): %+v; want the configured peers", e)
	}
	if err := <-done; err != nil {
		t.Fatalf("Drain = %v", err)
	}
}

// TestDrainTellsHandshakes: a connection still in its handshake when the drain closes it
// got no GOAWAY, so the close carries ERROR SHUTTING_DOWN (CLOSING, RECONNECT, TRY_OTHER,
// the other nodes), then a clean EOF: never a silent close (PROTOCOL.md, sections 4.13
// and 5).
func TestDrainTellsHandshakes(t *testing.T) {
	s := startServer(t, Config{Peers: "10.0.0.2:7400", HandshakeTimeout: time.Minute})
	silent := rawpeer.Dial(t, s.Addr().String())
	waitFor(t, "the silent connection enrolled", func() bool { return s.Stats().Connections == 1 })
	done := make(chan error, 1)
	go func() { done <- s.Drain(context.Background(), 100*time.Millisecond) }()
	f, e := silent.ExpectError(codec.CodeShuttingDown)
	want := codec.ErrFlagClosing | codec.ErrFlagReconnect | codec.ErrFlagTryOther
	if f.Corr != 0 || e.Flags != want || !slices.Equal(e.Addrs, []string{"10.0.0.2:7400"}) {
		t.Fatalf("drain's close of a handshake: corr %d %+v; want corr 0, CLOSING|RECONNECT|TRY_OTHER, the peers", f.Corr, e)
	}
	if _, err := silent.ReadTimeout(10 * time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("after the ERROR: %v; want a clean EOF", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Drain = %v", err)
	}
}

// TestDrainStartedHook: WithDrainStarted's function runs once, when Draining already
// reports true and before any client is sent GOAWAY (a cluster marks its lease draining
// there, so the other nodes stop suggesting this one before its clients move).
func TestDrainStartedHook(t *testing.T) {
	entered, release := make(chan bool, 2), make(chan struct{})
	var s *Server
	s = startServer(t, Config{}, WithDrainStarted(func() {
		entered <- s.Draining()
		<-release
	}))
	p := connect(t, s, "p")
	done := make(chan error, 1)
	go func() { done <- s.Drain(context.Background(), 300*time.Millisecond) }()
	if draining := <-entered; !draining {
		t.Error("Draining() false inside the hook")
	}
	if f, err := p.ReadTimeout(100 * time.Millisecond); err == nil {
		t.Errorf("client got %v while the hook ran; want nothing before it returns", f.Type)
	}
	close(release)
	p.Expect(codec.TypeGoAway)
	p.ExpectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Drain = %v", err)
	}
	if err := s.Drain(context.Background(), time.Second); err != nil {
		t.Fatalf("second Drain = %v", err)
	}
	select {
	case <-entered:
		t.Error("the hook ran twice")
	default:
	}
}

// TestPingInterval: WELCOME announces a third of the idle timeout, 0 only when there is
// none (PROTOCOL.md: 0 means no idle timeout), never a wrapped value.
func TestPingInterval(t *testing.T) {
	for _, tc := range []struct {
		idle time.Duration
		want uint32
	}{
		{0, 0},
		{time.Millisecond, 1},
		{2 * time.Millisecond, 1},
		{3 * time.Millisecond, 1},
		{90 * time.Second, 30000},
		{1 << 62, math.MaxUint32},
	} {
		if got := pingIntervalMs(tc.idle); got != tc.want {
			t.Errorf("pingIntervalMs(%v) = %d; want %d", tc.idle, got, tc.want)
		}
	}
}

// TestPeerAddrsFit: the addresses GOAWAY and TRY_OTHER refusals carry are cut, best first,
// to what keeps such a frame within 1024 bytes with any reason: a client may enforce
// max_frame (at least 1024, and unknown before WELCOME) on them too.
func TestPeerAddrsFit(t *testing.T) {
	many := make([]string, 300)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.%d.%d:7400", i/256, i%256)
	}
	long := strings.Repeat("h", 256)
	for _, tc := range []struct {
		name string
		in   []string
		want int // addresses kept: a prefix of in without the unsendable ones
	}{
		{"none", nil, 0},
		{"a few", many[:3], 3},
		{"many", many, 0}, // as many as fit: checked below
		{"one too long for a str8", []string{"a:1", long, "b:2"}, 2},
		{"empty", []string{"", "a:1"}, 1},
	} {
		got := fitAddrs(tc.in)
		if tc.want > 0 && len(got) != tc.want {
			t.Errorf("%s: kept %d; want %d", tc.name, len(got), tc.want)
		}
		e := codec.AppendError(nil, 0, codec.ErrorBody{Code: codec.CodeShuttingDown, Reason: strings.Repeat("r", 255), Addrs: got})
		g := codec.AppendGoAway(nil, codec.GoAway{Reason: strings.Repeat("r", 255), Addrs: got})
		if n := max(len(e), len(g)) - codec.PrefixLen; n > handshakeMaxFrame {
			t.Errorf("%s: a frame with %d addresses has len %d; want <= %d", tc.name, len(got), n, handshakeMaxFrame)
		}
		if tc.name == "many" {
			if len(got) < 40 || !slices.Equal(got, many[:len(got)]) {
				t.Errorf("many: kept %d, not the first ones in order", len(got))
			}
			one := codec.AppendError(nil, 0, codec.ErrorBody{Reason: strings.Repeat("r", 255), Addrs: many[:len(got)+1]})
			if len(one)-codec.PrefixLen <= handshakeMaxFrame {
				t.Errorf("many: one more address (%d) would still fit", len(got)+1)
			}
		}
	}
	s := startServer(t, Config{Peers: strings.Join(many, ",")})
	if n := len(s.peerAddrs()); n == 0 || n == len(many) {
		t.Errorf("configured peers: %d of %d kept", n, len(many))
	}
	s.SetPeers(many)
	if n := len(s.peerAddrs()); n == 0 || n == len(many) {
		t.Errorf("SetPeers: %d of %d kept", n, len(many))
	}
}

// TestOwnAnswersBounded: a client that never reads, sending frames that each earn an
// answer (a REPLY with a made-up token and corr, a SEND+ACK to nobody, an UNREGISTER of a
// name it does not own), is a slow consumer once what waits for it reaches
// max-pending-bytes, whatever the frame. Only PING and ECHO were checked: a forged REPLY
// flood grew one connection's output to ~1 GB in 4 s.
func TestOwnAnswersBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"forged REPLY", codec.AppendReply(nil, 7, 0x0001000000000009, nil)},
		{"SEND+ACK to nobody", codec.AppendSend(nil, codec.FlagAck, 8, "nobody", nil)},
		{"UNREGISTER not owned", codec.AppendName(nil, codec.TypeUnregister, 9, "not-mine")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{MaxPendingBytes: 64 << 10})
			p := connect(t, s, "deaf")
			bystander := connect(t, s, "bystander")
			burst := bytes.Repeat(tc.frame, (32<<10)/len(tc.frame))
			for i := 0; i < 4096 && s.Stats().SlowConsumers == 0; i++ { // at most ~128 MiB
				_ = p.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := p.Conn.Write(burst); err != nil {
					break
				}
			}
			waitFor(t, "the deaf client taken for a slow consumer", func() bool { return s.Stats().SlowConsumers == 1 })
			bystander.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 1, []byte("ok")))
			bystander.Expect(codec.TypeEchoReply)
			// What the deaf client gets when it reads again: whole frames, the last ERROR
			// SLOW_CONSUMER, then a clean EOF.
			rawpeer.CheckClosedCleanly(t, p.ReadToEOF())
		})
	}
}

// TestUnreadResponsesBounded: a requester that does not read its RESPONSEs is a slow
// consumer once they fill its caps, as a reader of MESSAGEs is; each replier whose
// RESPONSE could not be queued is told so (QUEUE_FULL, or NO_ROUTE once the requester is
// gone). Counted as the clients see it: every REPLY is either a RESPONSE the requester
// reads as a whole frame or an ERROR to its replier, and the requester's stream ends with
// ERROR SLOW_CONSUMER and a clean EOF. Unchecked, up to max-pending RESPONSEs of up to
// max-frame each waited for it.
func TestUnreadResponsesBounded(t *testing.T) {
	// A small send buffer, so that what the requester does not read waits in the server;
	// both clients on one loop, so that every ERROR to the replier comes before its PONG.
	s := startServer(t, Config{Loops: 2, MaxPendingBytes: 256 << 10, SocketSendBuffer: 64 << 10})
	svc := registeredOn(t, s, "svc", 0)
	deaf := connectOn(t, s, "deaf", 0)
	const n = 200 // 200 × 64 KiB: far past the sockets' buffers and the 256 KiB cap
	for i := range n {
		deaf.Write(codec.AppendRequest(nil, uint32(i+1), "svc", 60000, nil))
	}
	// Every REQUEST handled before the first RESPONSE: the requester sends nothing more,
	// so its RESPONSEs alone must find it at its caps.
	deaf.Write(codec.AppendFrame(nil, codec.TypePing, 0, 0xffff, nil))
	deaf.Expect(codec.TypePong)
	big := make([]byte, 64<<10)
	refused := map[codec.ErrorCode]int{}
	for answered := 0; answered < n; {
		f, err := svc.Read()
		if err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case codec.TypeIncoming:
			tok, _, _, _, err := codec.ParseIncoming(f.Body)
			if err != nil {
				t.Fatal(err)
			}
			answered++
			svc.Write(codec.AppendReply(nil, uint32(answered), tok, big))
		case codec.TypeError:
			e, _ := codec.ParseError(f.Body)
			refused[e.Code]++
		}
	}
	// The ERRORs answering the last REPLYs come after them: a PONG marks the end.
	svc.Write(codec.AppendFrame(nil, codec.TypePing, 0, 0xffff, nil))
	for {
		f, err := svc.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == codec.TypePong {
			break
		}
		if f.Type == codec.TypeError {
			e, _ := codec.ParseError(f.Body)
			refused[e.Code]++
		}
	}
	if refused[codec.CodeQueueFull] == 0 {
		t.Fatalf("replier told %v; want QUEUE_FULL for the RESPONSEs a requester that reads nothing could not take", refused)
	}
	r := deaf.ReadToEOF()
	rawpeer.CheckClosedCleanly(t, r)
	if got := r.Resps + refused[codec.CodeQueueFull] + refused[codec.CodeNoRoute]; got != n || len(refused) > 2 {
		t.Errorf("%d REPLYs: the requester read %d RESPONSEs, the replier was told %v; want each REPLY one or the other",
			n, r.Resps, refused)
	}
	waitFor(t, "the requester taken for a slow consumer", func() bool { return s.Stats().SlowConsumers == 1 })
}

// TestDrainGoAwayInChunks: a drain writes GOAWAY a chunk of connections at a time, and
// the loop handles its events in between: a client told to go away closes, and its
// connection is closed and its name let go while others still wait for their GOAWAY.
// Written in one task, the closes waited for the whole round (2.3 s for a drained
// node's 15,883 connections among six nodes on two cores, docs/BENCHMARKS.md). Every
// connection gets exactly one GOAWAY.
func TestDrainGoAwayInChunks(t *testing.T) {
	s := startServer(t, Config{Loops: 1})
	n := 2*goAwayChunk + 10
	peers := make([]*rawpeer.Peer, n)
	for i := range peers {
		peers[i] = registered(t, s, "chunk-"+strconv.Itoa(i))
	}
	// The first pause between chunks waits for the test: it finds a client that has its
	// GOAWAY (bytes waiting in its socket), closes it and waits for the server to close
	// that connection, before the next chunk is queued.
	paced := 0
	paused, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(resume) }) }
	t.Cleanup(release) // a failed test does not leave the drain waiting
	s.goAwayPaced = func() {
		if paced++; paced == 1 {
			close(paused)
			<-resume
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Drain(context.Background(), 2*time.Second) }()
	select {
	case <-paused:
	case err := <-done:
		t.Fatalf("Drain = %v before the first pause between GOAWAY chunks", err)
	}
	closedEarly, told := -1, 0
	waitFor(t, "a client to have its GOAWAY", func() bool {
		told = 0
		for i, p := range peers {
			if unread(t, p) > 0 {
				told++
				closedEarly = i
			}
		}
		return told > 0
	})
	if told > goAwayChunk {
		t.Errorf("%d clients have their GOAWAY after the first chunk; want at most %d", told, goAwayChunk)
	}
	peers[closedEarly].Expect(codec.TypeGoAway)
	_ = peers[closedEarly].Conn.Close()
	waitFor(t, "the loop to close the connection between two GOAWAY chunks", func() bool {
		return s.Stats().Connections == n-1
	})
	if id, ok := s.dir.Lookup([]byte("chunk-" + strconv.Itoa(closedEarly))); ok {
		t.Errorf("the closed client's name is still held by %v", id)
	}
	release()
	for i, p := range peers {
		if i == closedEarly {
			continue
		}
		p.Expect(codec.TypeGoAway)
		for {
			f, err := p.Read()
			if err != nil {
				break
			}
			if f.Type == codec.TypeGoAway {
				t.Fatalf("client %d: a second GOAWAY", i)
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Drain = %v", err)
	}
	if want := (n+goAwayChunk-1)/goAwayChunk - 1; paced != want {
		t.Errorf("%d pauses between GOAWAY chunks; want %d", paced, want)
	}
}

// unread is how many bytes p's socket holds unread.
func unread(t *testing.T, p *rawpeer.Peer) int {
	t.Helper()
	rc, err := p.Conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil || ierr != nil {
		t.Fatalf("SIOCINQ: %v %v", err, ierr)
	}
	return n
}
