package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// testConfig returns a Config with fast reconnects for tests.
func testConfig() Config {
	return Config{Name: "tester", ReconnectMin: 5 * time.Millisecond, ReconnectMax: 50 * time.Millisecond}
}

func dial(t *testing.T, addrs []string, cfg Config) *Client {
	t.Helper()
	c, err := Dial(context.Background(), addrs, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialWelcome(t *testing.T) {
	s := newFakeServer(t, nil)
	var states stateLog
	cfg := testConfig()
	cfg.OnStateChange = states.add
	c := dial(t, []string{s.addr}, cfg)
	if got := c.ConnID(); got != 1 {
		t.Errorf("ConnID() = %d; want 1", got)
	}
	if got, want := c.ServerID(), "fake-"+s.addr; got != want {
		t.Errorf("ServerID() = %q; want %q", got, want)
	}
	if got := c.Addr(); got != s.addr {
		t.Errorf("Addr() = %q; want %q", got, s.addr)
	}
	if got := c.State(); got != Connected {
		t.Errorf("State() = %v; want Connected", got)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got, want := states.get(), []State{Connected, Closed}; !slices.Equal(got, want) {
		t.Errorf("states = %v; want %v", got, want)
	}
	waitFor(t, "GOODBYE", func() bool { return len(s.received(codec.TypeGoodbye)) == 1 })
	if got := c.Addr(); got != "" {
		t.Errorf("Addr() after Close = %q; want empty", got)
	}
}

func TestDialUnauthorized(t *testing.T) {
	s := newFakeServer(t, func(s *fakeServer) { s.token = "secret" })
	cfg := testConfig()
	cfg.Token = "wrong"
	c, err := Dial(context.Background(), []string{s.addr}, cfg)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded with a wrong token")
	}
	var se *ServerError
	if !errors.As(err, &se) || se.Code != codec.CodeUnauthorized {
		t.Fatalf("Dial error = %v; want a *ServerError with UNAUTHORIZED", err)
	}
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("errors.Is(%v, ErrUnauthorized) = false", err)
	}

	cfg.Token = "secret"
	dial(t, []string{s.addr}, cfg)
}

func TestDialTriesAddrsInOrder(t *testing.T) {
	s := newFakeServer(t, nil)
	c := dial(t, []string{closedAddr(t), s.addr}, testConfig())
	if got := c.Addr(); got != s.addr {
		t.Errorf("Addr() = %q; want %q", got, s.addr)
	}
}

func TestDialErrors(t *testing.T) {
	if _, err := Dial(context.Background(), nil, Config{}); !errors.Is(err, ErrNoAddrs) {
		t.Errorf("Dial(no addrs) = %v; want ErrNoAddrs", err)
	}
	if _, err := Dial(context.Background(), []string{"x:1"}, Config{DialTimeout: -1}); err == nil {
		t.Error("Dial with an invalid Config succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dial(ctx, []string{closedAddr(t), closedAddr(t)}, Config{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Dial(cancelled ctx) = %v; want context.Canceled", err)
	}
}

func TestEchoPing(t *testing.T) {
	s := newFakeServer(t, nil)
	c := dial(t, []string{s.addr}, testConfig())
	ctx := context.Background()
	for _, payload := range [][]byte{{}, []byte("hello"), bytes.Repeat([]byte{7}, 200_000)} {
		got, err := c.Echo(ctx, payload)
		if err != nil {
			t.Fatalf("Echo(%d bytes): %v", len(payload), err)
		}
		if !bytes.Equal(got, payload) {
			t.Errorf("Echo(%d bytes) returned %d different bytes", len(payload), len(got))
		}
	}
	rtt, err := c.Ping(ctx)
	if err != nil || rtt <= 0 {
		t.Errorf("Ping() = %v, %v; want > 0, nil", rtt, err)
	}
}

func TestFrameTooLargeForServer(t *testing.T) {
	s := newFakeServer(t, func(s *fakeServer) { s.welcome.MaxFrame = 100 })
	c := dial(t, []string{s.addr}, testConfig())
	if _, err := c.Echo(context.Background(), make([]byte, 200)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Echo(200 bytes) with server max 100 = %v; want ErrFrameTooLarge", err)
	}
	if _, err := c.Echo(context.Background(), make([]byte, 50)); err != nil {
		t.Errorf("Echo(50 bytes) after a refused frame: %v", err)
	}
}

func TestRegister(t *testing.T) {
	s := newFakeServer(t, func(s *fakeServer) { s.taken["bob"] = true })
	c := dial(t, []string{s.addr}, testConfig())
	ctx := context.Background()
	if err := c.Register(ctx, "alice"); err != nil {
		t.Fatalf("Register(alice): %v", err)
	}
	err := c.Register(ctx, "bob")
	var se *ServerError
	if !errors.As(err, &se) || se.Code != codec.CodeNameTaken || !errors.Is(err, ErrNameTaken) {
		t.Fatalf("Register(bob) = %v; want NAME_TAKEN", err)
	}
	if got, want := c.Names(), []string{"alice"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v; want %v", got, want)
	}
	for _, name := range []string{"", string(make([]byte, 256))} {
		if err := c.Register(ctx, name); !errors.Is(err, ErrBadName) {
			t.Errorf("Register(%d bytes) = %v; want ErrBadName", len(name), err)
		}
	}
	if err := c.Unregister(ctx, "alice"); err != nil {
		t.Errorf("Unregister(alice): %v", err)
	}
	if err := c.Unregister(ctx, "carol"); !errors.Is(err, ErrNotOwner) {
		t.Errorf("Unregister(carol) = %v; want ErrNotOwner", err)
	}
	if got := c.Names(); len(got) != 0 {
		t.Errorf("Names() = %v; want none", got)
	}
}

func TestSend(t *testing.T) {
	s := newFakeServer(t, nil)
	c := dial(t, []string{s.addr}, testConfig())
	ctx := context.Background()
	if err := c.SendAck(ctx, "alice", []byte("hi")); err != nil {
		t.Errorf("SendAck(alice): %v", err)
	}
	err := c.SendAck(ctx, "nobody", []byte("hi"))
	if !errors.Is(err, ErrNoRoute) {
		t.Errorf("SendAck(nobody) = %v; want ErrNoRoute", err)
	}
	if want := "switchboard: NO_ROUTE: no such name"; err == nil || err.Error() != want {
		t.Errorf("error text = %q; want %q", err, want)
	}
	if err := c.Send(ctx, "alice", []byte("fire")); err != nil {
		t.Errorf("Send: %v", err)
	}
	waitFor(t, "the fire-and-forget SEND", func() bool { return len(s.received(codec.TypeSend)) == 3 })
	f := s.received(codec.TypeSend)[2]
	name, payload, _ := codec.ParseSend(f.Body)
	if f.Corr != 0 || f.Flags != 0 || string(name) != "alice" || string(payload) != "fire" {
		t.Errorf("SEND frame = corr %d flags %d %q %q; want corr 0 flags 0 alice fire", f.Corr, f.Flags, name, payload)
	}
	if ack := s.received(codec.TypeSend)[0]; ack.Flags != codec.FlagAck || ack.Corr == 0 {
		t.Errorf("SendAck frame flags %d corr %d; want FlagAck and a corr", ack.Flags, ack.Corr)
	}
}

func TestRequest(t *testing.T) {
	s := newFakeServer(t, nil)
	c := dial(t, []string{s.addr}, testConfig())
	ctx := context.Background()

	got, err := c.Request(ctx, "echo", []byte("ping"))
	if err != nil || string(got) != "ping" {
		t.Errorf("Request(echo) = %q, %v; want ping", got, err)
	}

	_, err = c.Request(ctx, "timeout", nil)
	var se *ServerError
	if !errors.As(err, &se) || !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Request(timeout) = %v; want a *ServerError matching ErrTimeout and context.DeadlineExceeded", err)
	}

	// Cancelling the context ends the wait; the late answer (none here) would be dropped.
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Request(cctx, "never", nil)
		errc <- err
	}()
	waitFor(t, "the REQUEST", func() bool { return len(s.received(codec.TypeRequest)) == 3 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Request after cancel = %v; want context.Canceled", err)
	}

	// A context deadline shortens the timeout sent to the server.
	// (1 s rather than less: the client must still have time left when it sends, however
	// slow the machine is, for the timeout field to be checked.)
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	defer dcancel()
	if _, err := c.Request(dctx, "never", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Request with deadline = %v; want DeadlineExceeded", err)
	}
	reqs := s.received(codec.TypeRequest)
	_, ms, _, _ := codec.ParseRequest(reqs[len(reqs)-1].Body)
	if ms == 0 || ms > 1000 {
		t.Errorf("timeout_ms = %d; want 1..1000", ms)
	}
	_, ms, _, _ = codec.ParseRequest(reqs[0].Body)
	if ms < 4000 || ms > 5000 {
		t.Errorf("default timeout_ms = %d; want about 5000", ms)
	}
}

func TestRequestLocalTimeout(t *testing.T) {
	s := newFakeServer(t, nil)
	cfg := testConfig()
	cfg.RequestTimeout = 20 * time.Millisecond
	c := dial(t, []string{s.addr}, cfg)
	// The server never answers: after the grace period the client gives up by itself.
	_, err := c.Request(context.Background(), "never", nil)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Request = %v; want ErrTimeout and DeadlineExceeded", err)
	}
	var se *ServerError
	if errors.As(err, &se) {
		t.Errorf("local timeout is a *ServerError: %v", se)
	}
}

func TestPipelinedRequests(t *testing.T) {
	s := newFakeServer(t, nil)
	c := dial(t, []string{s.addr}, testConfig())
	const goroutines, each = 200, 5
	var wg sync.WaitGroup
	errc := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				payload := binary.BigEndian.AppendUint32(nil, uint32(g*each+i))
				got, err := c.Request(context.Background(), "jitter", payload)
				if err != nil {
					errc <- err
					return
				}
				if !bytes.Equal(got, payload) {
					errc <- fmt.Errorf("request %x got answer %x", payload, got)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if n := len(s.received(codec.TypeRequest)); n != goroutines*each {
		t.Errorf("server saw %d REQUESTs; want %d", n, goroutines*each)
	}
}

func TestCallbacks(t *testing.T) {
	s := newFakeServer(t, nil)
	msgs := make(chan Message, 1)
	reqs := make(chan *Request, 1)
	cfg := testConfig()
	cfg.OnMessage = func(m Message) { msgs <- m }
	cfg.OnRequest = func(r *Request) { reqs <- r }
	c := dial(t, []string{s.addr}, cfg)
	_ = c
	fc := s.lastConn()
	fc.write(codec.AppendMessage(nil, 7, []byte("bob"), []byte("hi")))
	fc.write(codec.AppendIncoming(nil, 99, 8, []byte("carol"), []byte("q?")))

	m := <-msgs
	if m.FromConn != 7 || m.From != "bob" || string(m.Payload) != "hi" {
		t.Errorf("Message = %+v; want from 7 bob hi", m)
	}
	r := <-reqs
	if r.FromConn != 8 || r.From != "carol" || string(r.Payload) != "q?" {
		t.Errorf("Request = %d %q %q; want 8 carol q?", r.FromConn, r.From, r.Payload)
	}
	// Reply from another goroutine than the callback's.
	if err := r.Reply([]byte("a!")); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	if err := r.Reply([]byte("again")); !errors.Is(err, ErrReplied) {
		t.Errorf("second Reply = %v; want ErrReplied", err)
	}
	waitFor(t, "the REPLY", func() bool { return len(s.received(codec.TypeReply)) == 1 })
	f := s.received(codec.TypeReply)[0]
	token, payload, err := codec.ParseReply(f.Body)
	if err != nil || token != 99 || string(payload) != "a!" || f.Corr != 0 {
		t.Errorf("REPLY = token %d %q corr %d (%v); want 99 a! corr 0", token, payload, f.Corr, err)
	}
}

func TestReconnectReregisters(t *testing.T) {
	a := newFakeServer(t, nil)
	b := newFakeServer(t, nil)
	var states stateLog
	cfg := testConfig()
	cfg.OnStateChange = states.add
	c := dial(t, []string{a.addr, b.addr}, cfg)
	ctx := context.Background()
	for _, n := range []string{"alpha", "beta"} {
		if err := c.Register(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	a.stop()
	waitFor(t, "reconnect to b", func() bool { return c.Addr() == b.addr })
	waitFor(t, "re-registration", func() bool {
		r := b.registered()
		return r["alpha"] && r["beta"] && c.State() == Connected
	})
	if got, want := states.get(), []State{Connected, Reconnecting, Connected}; !slices.Equal(got, want) {
		t.Errorf("states = %v; want %v", got, want)
	}
	if got, err := c.Request(ctx, "echo", []byte("x")); err != nil || string(got) != "x" {
		t.Errorf("Request after reconnect = %q, %v", got, err)
	}
}

// TestReregisterUnavailable: a node that cannot decide a re-registration yet (UNAVAILABLE,
// as a cluster's directory answers during a KV election) is asked again after its
// retry-after until it decides; the name is kept, not lost.
func TestReregisterUnavailable(t *testing.T) {
	a := newFakeServer(t, nil)
	var refusals atomic.Int32
	b := newFakeServer(t, func(s *fakeServer) {
		s.hook = func(fc *fakeConn, f codec.Frame) bool {
			if f.Type == codec.TypeRegister && string(f.Body) == "beta" && refusals.Add(1) <= 2 {
				fc.writeError(f.Corr, codec.ErrorBody{Code: codec.CodeUnavailable, RetryAfterMs: 50, Reason: "election"})
				return true
			}
			return false
		}
	})
	c, states := failOver(t, a, b, "alpha", "beta")
	waitFor(t, "beta registered on b after two refusals", func() bool {
		return countRegisters(b, "beta") == 3 // two refused UNAVAILABLE, the third answered OK
	})
	waitFor(t, "connected with both names kept", func() bool {
		return slices.Equal(c.Names(), []string{"alpha", "beta"}) && c.State() == Connected
	})
	if states.has(NameLost) {
		t.Errorf("states %v: a name was taken for lost", states.get())
	}
}

// TestReregisterNoAnswer: a re-registration the node does not answer within
// RequestTimeout (a cluster node whose claim waits on a node that does not answer) is
// sent again, and the name is kept.
func TestReregisterNoAnswer(t *testing.T) {
	a := newFakeServer(t, nil)
	var dropped atomic.Int32
	b := newFakeServer(t, func(s *fakeServer) {
		s.hook = func(fc *fakeConn, f codec.Frame) bool {
			// the first REGISTER of beta is never answered
			return f.Type == codec.TypeRegister && string(f.Body) == "beta" && dropped.Add(1) == 1
		}
	})
	states := &stateLog{}
	cfg := testConfig()
	cfg.OnStateChange = states.add
	cfg.RequestTimeout = 300 * time.Millisecond
	c := dial(t, []string{a.addr, b.addr}, cfg)
	for _, n := range []string{"alpha", "beta"} {
		if err := c.Register(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	a.stop()
	waitFor(t, "beta registered on b after one unanswered REGISTER", func() bool {
		return countRegisters(b, "beta") == 2
	})
	waitFor(t, "connected with both names kept", func() bool {
		return slices.Equal(c.Names(), []string{"alpha", "beta"}) && c.State() == Connected
	})
	if states.has(NameLost) {
		t.Errorf("states %v: a name was taken for lost", states.get())
	}
}

// failOver dials a and b, registers names (on a) and stops a: the client reconnects to b
// and registers them again there. states records the client's state changes.
func failOver(t *testing.T, a, b *fakeServer, names ...string) (*Client, *stateLog) {
	t.Helper()
	states := &stateLog{}
	cfg := testConfig()
	cfg.OnStateChange = states.add
	c := dial(t, []string{a.addr, b.addr}, cfg)
	for _, n := range names {
		if err := c.Register(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	a.stop()
	return c, states
}

func countRegisters(s *fakeServer, name string) int {
	n := 0
	for _, f := range s.received(codec.TypeRegister) {
		if string(f.Body) == name {
			n++
		}
	}
	return n
}

func TestReregisterNameTaken(t *testing.T) {
	a := newFakeServer(t, nil)
	b := newFakeServer(t, func(s *fakeServer) { s.taken["beta"] = true })
	c, states := failOver(t, a, b, "alpha", "beta")
	waitFor(t, "NameLost", func() bool { return states.has(NameLost) })
	if got, want := c.Names(), []string{"alpha"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v; want %v", got, want)
	}
	if got := c.State(); got != Connected {
		t.Errorf("State() = %v; want Connected", got)
	}
}

func TestGoAway(t *testing.T) {
	b := newFakeServer(t, nil)
	a := newFakeServer(t, func(s *fakeServer) {
		// A REQUEST "held" gets a GOAWAY first and its RESPONSE afterwards: the client must
		// finish it before leaving.
		s.hook = func(fc *fakeConn, f codec.Frame) bool {
			if f.Type != codec.TypeRequest {
				return false
			}
			fc.write(codec.AppendGoAway(nil, codec.GoAway{ReconnectAfterMs: 60_000, Reason: "drain", Addrs: []string{b.addr}}))
			fc.write(codec.AppendFrame(nil, codec.TypeResponse, 0, f.Corr, []byte("done")))
			return true
		}
	})
	// a is listed twice: only the GOAWAY's address list leads to b.
	c := dial(t, []string{a.addr, a.addr}, testConfig())
	if err := c.Register(context.Background(), "svc"); err != nil {
		t.Fatal(err)
	}
	got, err := c.Request(context.Background(), "held", nil)
	if err != nil || string(got) != "done" {
		t.Fatalf("Request during GOAWAY = %q, %v; want done", got, err)
	}
	waitFor(t, "reconnect to b", func() bool { return c.Addr() == b.addr })
	waitFor(t, "GOODBYE to a", func() bool { return len(a.received(codec.TypeGoodbye)) == 1 })
	waitFor(t, "svc on b", func() bool { return b.registered()["svc"] })
}

func TestClosingErrorFailsPending(t *testing.T) {
	a := newFakeServer(t, func(s *fakeServer) {
		s.hook = func(fc *fakeConn, f codec.Frame) bool {
			if f.Type != codec.TypeRequest || fc.id != 1 {
				return false
			}
			fc.writeError(0, codec.ErrorBody{Code: codec.CodeSlowConsumer, Reason: "read faster",
				Flags: codec.ErrFlagClosing | codec.ErrFlagReconnect})
			fc.nc.Close()
			return true
		}
	})
	c := dial(t, []string{a.addr}, testConfig())
	_, err := c.Request(context.Background(), "echo", nil)
	if !errors.Is(err, ErrDisconnected) || !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("Request = %v; want ErrDisconnected and ErrSlowConsumer", err)
	}
	waitFor(t, "reconnect", func() bool { return c.ConnID() == 2 })
	if got, err := c.Request(context.Background(), "echo", []byte("y")); err != nil || string(got) != "y" {
		t.Errorf("Request after reconnect = %q, %v", got, err)
	}
}

// TestUnknownFrameSkipped: a frame of a type this version does not know (a later
// protocol's) is skipped by its len, as PROTOCOL.md's checklist asks: the frames around
// it arrive and the connection stays up. A known type the server never sends (HELLO) is
// a protocol error: the client reconnects.
func TestUnknownFrameSkipped(t *testing.T) {
	s := newFakeServer(t, nil)
	msgs := make(chan Message, 10)
	cfg := testConfig()
	cfg.OnMessage = func(m Message) { msgs <- m }
	c := dial(t, []string{s.addr}, cfg)
	fc := s.lastConn()
	fc.write(codec.AppendMessage(nil, 1, []byte("x"), []byte("before")))
	fc.write(codec.AppendFrame(nil, 0x7e, 0x80, 5, []byte("from a later version")))
	fc.write(codec.AppendMessage(nil, 1, []byte("x"), []byte("after")))
	for _, want := range []string{"before", "after"} {
		select {
		case m := <-msgs:
			if string(m.Payload) != want {
				t.Fatalf("got %q; want %q", m.Payload, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no MESSAGE %q", want)
		}
	}
	if _, err := c.Echo(context.Background(), []byte("still up")); err != nil || c.ConnID() != 1 {
		t.Fatalf("after an unknown frame: Echo %v on connection %d; want the first connection", err, c.ConnID())
	}
	fc.write(codec.AppendHello(nil, 1, codec.Version, "server?", ""))
	waitFor(t, "reconnect after a HELLO from the server", func() bool { return c.ConnID() == 2 })
}

// TestMaxFrameFromWelcome: by default the client accepts what the server's WELCOME says it
// may send (PROTOCOL.md, section 2), here 4 MiB, not only 1 MiB.
func TestMaxFrameFromWelcome(t *testing.T) {
	s := newFakeServer(t, func(s *fakeServer) { s.welcome.MaxFrame = 4 << 20 })
	msgs := make(chan Message, 1)
	cfg := testConfig()
	cfg.OnMessage = func(m Message) { msgs <- m }
	c := dial(t, []string{s.addr}, cfg)
	s.lastConn().write(codec.AppendMessage(nil, 1, []byte("x"), make([]byte, 3<<20/2)))
	select {
	case m := <-msgs:
		if len(m.Payload) != 3<<20/2 || c.ConnID() != 1 {
			t.Fatalf("got %d bytes on connection %d; want 1.5 MiB on the first", len(m.Payload), c.ConnID())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a 1.5 MiB MESSAGE under a 4 MiB max frame did not arrive (connection %d)", c.ConnID())
	}
}

func TestOversizedFrameReconnects(t *testing.T) {
	s := newFakeServer(t, nil)
	msgs := make(chan Message, 10)
	cfg := testConfig()
	cfg.MaxFrame = 1024
	cfg.OnMessage = func(m Message) { msgs <- m }
	c := dial(t, []string{s.addr}, cfg)
	s.lastConn().write(codec.AppendMessage(nil, 1, []byte("x"), make([]byte, 2000)))
	waitFor(t, "reconnect", func() bool { return c.ConnID() == 2 })
	if len(msgs) != 0 {
		t.Errorf("an oversized MESSAGE reached OnMessage")
	}
}

func TestNoReconnect(t *testing.T) {
	s := newFakeServer(t, nil)
	var states stateLog
	cfg := testConfig()
	cfg.NoReconnect = true
	cfg.OnStateChange = states.add
	c := dial(t, []string{s.addr}, cfg)
	s.dropConns()
	waitFor(t, "Closed", func() bool { return c.State() == Closed })
	if _, err := c.Echo(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Echo after loss = %v; want ErrClosed", err)
	}
	if got, want := states.get(), []State{Connected, Closed}; !slices.Equal(got, want) {
		t.Errorf("states = %v; want %v", got, want)
	}
}

// TestNoReconnectWithoutReconnectFlag: PROTOCOL.md's checklist reconnects after a closing
// ERROR only when it carries RECONNECT. A server that closes without it (BAD_FRAME, a
// wrong token) ends the client, whether it says so on an open connection or refuses a
// reconnect's handshake; a wrong token used to be retried for ever.
func TestNoReconnectWithoutReconnectFlag(t *testing.T) {
	t.Run("closing ERROR on the connection", func(t *testing.T) {
		s := newFakeServer(t, nil)
		var states stateLog
		cfg := testConfig()
		cfg.OnStateChange = states.add
		c := dial(t, []string{s.addr}, cfg)
		s.lastConn().writeError(0, codec.ErrorBody{Code: codec.CodeBadFrame, Flags: codec.ErrFlagClosing, Reason: "malformed"})
		waitFor(t, "Closed", func() bool { return c.State() == Closed })
		if _, err := c.Echo(context.Background(), nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Echo after the close = %v; want ErrClosed", err)
		}
		if got, want := states.get(), []State{Connected, Closed}; !slices.Equal(got, want) {
			t.Errorf("states = %v; want %v", got, want)
		}
	})
	t.Run("reconnect refused", func(t *testing.T) {
		a := newFakeServer(t, nil)
		b := newFakeServer(t, func(s *fakeServer) { s.token = "the other token" })
		var states stateLog
		cfg := testConfig()
		cfg.OnStateChange = states.add
		c := dial(t, []string{a.addr, b.addr}, cfg)
		a.stop() // lost without a word: the next address is b, which refuses the token
		waitFor(t, "Closed", func() bool { return c.State() == Closed })
		if got, want := states.get(), []State{Connected, Reconnecting, Closed}; !slices.Equal(got, want) {
			t.Errorf("states = %v; want %v", got, want)
		}
	})
	t.Run("closing ERROR with RECONNECT", func(t *testing.T) {
		s := newFakeServer(t, nil)
		c := dial(t, []string{s.addr}, testConfig())
		s.lastConn().writeError(0, codec.ErrorBody{Code: codec.CodeHandshakeTimeout, Flags: codec.ErrFlagClosing | codec.ErrFlagReconnect})
		waitFor(t, "a reconnect", func() bool { return c.ConnID() == 2 && c.State() == Connected })
	})
}

func TestKeepalive(t *testing.T) {
	s := newFakeServer(t, func(s *fakeServer) { s.welcome.PingIntervalMs = 20 })
	dial(t, []string{s.addr}, testConfig())
	waitFor(t, "keepalive PINGs", func() bool { return len(s.received(codec.TypePing)) >= 3 })
}

// TestKeepaliveBusyHungServer: a client that keeps sending to a server that stopped
// answering (a hung node) still PINGs, gets no PONG, and reconnects elsewhere; writing
// alone used to count as a live connection, so it never noticed.
func TestKeepaliveBusyHungServer(t *testing.T) {
	var hung atomic.Bool
	a := newFakeServer(t, func(s *fakeServer) {
		s.welcome.PingIntervalMs = 40
		s.hook = func(*fakeConn, codec.Frame) bool { return hung.Load() } // swallow everything
	})
	b := newFakeServer(t, nil)
	c := dial(t, []string{a.addr, b.addr}, testConfig())
	waitFor(t, "a PONG from the live server", func() bool { return len(a.received(codec.TypePing)) >= 1 })
	hung.Store(true)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // busy: a SEND every few milliseconds, to a's socket while a is connected
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			_ = c.Send(context.Background(), "someone", []byte("x"))
		}
	}()
	defer func() { close(stop); <-done }()
	waitFor(t, "the client on the other server", func() bool { return c.Addr() == b.addr })
}

func TestCallsWaitForReconnect(t *testing.T) {
	a := newFakeServer(t, nil)
	gate := make(chan struct{})
	// b holds its WELCOME until the call below has been issued, so the call is issued while
	// the client is reconnecting however fast or slow the machine is.
	b := newFakeServer(t, func(s *fakeServer) { s.welcomeGate = gate })
	var opened sync.Once
	open := func() { opened.Do(func() { close(gate) }) }
	t.Cleanup(open) // runs before b's own cleanup, which waits for its goroutines
	reconnecting := make(chan struct{}, 1)
	cfg := testConfig()
	cfg.OnStateChange = func(s State) {
		if s == Reconnecting {
			select {
			case reconnecting <- struct{}{}:
			default:
			}
		}
	}
	c := dial(t, []string{a.addr, b.addr}, cfg)
	a.stop()
	<-reconnecting
	ctx := &doneWatch{Context: context.Background(), asked: make(chan struct{})}
	type result struct {
		got []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		got, err := c.Echo(ctx, []byte("z"))
		done <- result{got, err}
	}()
	<-ctx.asked // the call is under way (it watches its context)
	select {
	case r := <-done:
		t.Fatalf("Echo returned %q, %v while no server had welcomed the client", r.got, r.err)
	default:
	}
	open()
	// Issued while the client is reconnecting: it waits for the connection instead of failing.
	if r := <-done; r.err != nil || string(r.got) != "z" {
		t.Errorf("Echo during reconnect = %q, %v", r.got, r.err)
	}
}

// doneWatch is a context that reports when someone first asks for its Done channel.
type doneWatch struct {
	context.Context
	once  sync.Once
	asked chan struct{}
}

func (d *doneWatch) Done() <-chan struct{} {
	d.once.Do(func() { close(d.asked) })
	return d.Context.Done()
}

// TestGoodbyeReadsUntilClosed: after GOODBYE the client reads until the server closes
// (PROTOCOL.md's checklist, item 11), so what the server sent before it read the GOODBYE
// still arrives; it used to close its socket as soon as the GOODBYE was written.
func TestGoodbyeReadsUntilClosed(t *testing.T) {
	s := newFakeServer(t, func(s *fakeServer) {
		s.hook = func(fc *fakeConn, f codec.Frame) bool {
			if f.Type != codec.TypeGoodbye {
				return false
			}
			fc.write(codec.AppendMessage(nil, 1, []byte("x"), []byte("last words")))
			_ = fc.nc.Close()
			return true
		}
	})
	msgs := make(chan Message, 1)
	cfg := testConfig()
	cfg.OnMessage = func(m Message) { msgs <- m }
	c := dial(t, []string{s.addr}, cfg)
	c.Close()
	select {
	case m := <-msgs:
		if string(m.Payload) != "last words" {
			t.Fatalf("got %q", m.Payload)
		}
	default:
		t.Fatal("the MESSAGE the server sent after reading GOODBYE, before closing, was not read")
	}
}

// TestDrainDeadlineSaysGoodbye: a connection told GOAWAY with work still open at the drain
// deadline (RequestTimeout + 1 s; here an INCOMING request the application never
// answers) says GOODBYE and reads until the server closes, as when its work ends in
// time: what the server sent meanwhile, a MESSAGE acknowledged to its sender, still
// arrives. It used to close its socket at the deadline, and such MESSAGEs were lost.
func TestDrainDeadlineSaysGoodbye(t *testing.T) {
	b := newFakeServer(t, nil)
	a := newFakeServer(t, func(s *fakeServer) {
		s.hook = func(fc *fakeConn, f codec.Frame) bool {
			switch {
			case f.Type == codec.TypeEcho && fc.id == 1:
				fc.write(codec.AppendIncoming(nil, 7, 2, []byte("asker"), []byte("never answered")))
				fc.write(codec.AppendFrame(nil, codec.TypeEchoReply, 0, f.Corr, f.Body))
				fc.write(codec.AppendGoAway(nil, codec.GoAway{Reason: "drain", Addrs: []string{b.addr}}))
				return true
			case f.Type == codec.TypeGoodbye:
				fc.write(codec.AppendMessage(nil, 1, []byte("x"), []byte("acknowledged to its sender")))
				_ = fc.nc.Close()
				return true
			}
			return false
		}
	})
	msgs := make(chan Message, 1)
	cfg := testConfig()
	cfg.RequestTimeout = 200 * time.Millisecond
	cfg.OnMessage = func(m Message) { msgs <- m }
	cfg.OnRequest = func(*Request) {} // never replies
	c := dial(t, []string{a.addr}, cfg)
	start := time.Now()
	if _, err := c.Echo(context.Background(), []byte("go")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "GOODBYE to a", func() bool { return len(a.received(codec.TypeGoodbye)) == 1 })
	if d := time.Since(start); d < cfg.RequestTimeout+time.Second {
		t.Errorf("GOODBYE %v after GOAWAY; want the drain deadline, %v", d, cfg.RequestTimeout+time.Second)
	}
	select {
	case m := <-msgs:
		if string(m.Payload) != "acknowledged to its sender" {
			t.Fatalf("got %q", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the MESSAGE the server sent after reading GOODBYE, before closing, was not read")
	}
	waitFor(t, "reconnect to b", func() bool { return c.Addr() == b.addr })
}

func TestClosePending(t *testing.T) {
	s := newFakeServer(t, nil)
	var states stateLog
	cfg := testConfig()
	cfg.OnStateChange = states.add
	c, err := Dial(context.Background(), []string{s.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	errc := make(chan error, n)
	for range n {
		go func() {
			_, err := c.Request(context.Background(), "never", nil)
			errc <- err
		}()
	}
	waitFor(t, "the REQUESTs", func() bool { return len(s.received(codec.TypeRequest)) == n })
	c.Close()
	for range n {
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Errorf("pending Request = %v; want ErrClosed", err)
		}
	}
	if _, err := c.Echo(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Echo after Close = %v; want ErrClosed", err)
	}
	if err := c.Send(context.Background(), "x", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v; want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if got, want := states.get(), []State{Connected, Closed}; !slices.Equal(got, want) {
		t.Errorf("states = %v; want %v", got, want)
	}
}

func TestCloseWhileReconnecting(t *testing.T) {
	a := newFakeServer(t, nil)
	cfg := testConfig()
	c := dial(t, []string{a.addr}, cfg)
	a.stop()
	waitFor(t, "Reconnecting", func() bool { return c.State() == Reconnecting })
	errc := make(chan error, 1)
	go func() {
		_, err := c.Echo(context.Background(), nil)
		errc <- err
	}()
	c.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Echo waiting for a connection = %v; want ErrClosed", err)
	}
}
