package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/testserver"
	"github.com/switchboard/switchboard/server"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakcheck.GnetPool()...)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var (
	startServer = testserver.Start
	waitFor     = testserver.WaitFor
)

func dial(t testing.TB, addrs []string, cfg client.Config) *client.Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctx5(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func loopOf(id uint64) int { return int(uint8(id >> 40)) }

// TestEveryOperation drives each operation through the Go client and the real server.
func TestEveryOperation(t *testing.T) {
	s := startServer(t, server.Config{Token: "t0ken"})
	addr := []string{s.Addr().String()}
	ctx := ctx5(t)

	var got sync.Map
	svc := dial(t, addr, client.Config{Name: "svc", Token: "t0ken",
		OnMessage: func(m client.Message) { got.Store(string(m.Payload), m.From) },
		OnRequest: func(r *client.Request) { _ = r.Reply(append([]byte("re:"), r.Payload...)) },
	})
	caller := dial(t, addr, client.Config{Name: "caller", Token: "t0ken"})

	if out, err := caller.Echo(ctx, []byte("echo")); err != nil || string(out) != "echo" {
		t.Fatalf("Echo = %q, %v", out, err)
	}
	if _, err := caller.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := svc.Register(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if err := caller.Register(ctx, "svc"); !errors.Is(err, client.ErrNameTaken) {
		t.Fatalf("second Register = %v; want ErrNameTaken", err)
	}
	if err := caller.Unregister(ctx, "svc"); !errors.Is(err, client.ErrNotOwner) {
		t.Fatalf("Unregister of another's name = %v; want ErrNotOwner", err)
	}
	if err := caller.SendAck(ctx, "svc", []byte("acked")); err != nil {
		t.Fatal(err)
	}
	if err := caller.Send(ctx, "svc", []byte("fire")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both messages", func() bool {
		a, ok1 := got.Load("acked")
		_, ok2 := got.Load("fire")
		return ok1 && ok2 && a == "caller"
	})
	if out, err := caller.Request(ctx, "svc", []byte("q")); err != nil || string(out) != "re:q" {
		t.Fatalf("Request = %q, %v", out, err)
	}
	if err := caller.SendAck(ctx, "nobody", nil); !errors.Is(err, client.ErrNoRoute) {
		t.Fatalf("SendAck to unknown = %v; want ErrNoRoute", err)
	}
	if _, err := caller.Request(ctx, "nobody", nil); !errors.Is(err, client.ErrNoRoute) {
		t.Fatalf("Request to unknown = %v; want ErrNoRoute", err)
	}
	if err := svc.Unregister(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.Request(ctx, "svc", nil); !errors.Is(err, client.ErrNoRoute) {
		t.Fatalf("Request after Unregister = %v; want ErrNoRoute", err)
	}
	bad := client.Config{Name: "intruder", Token: "wrong", NoReconnect: true, Logger: quiet}
	if _, err := client.Dial(ctx, addr, bad); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("Dial with a wrong token = %v; want ErrUnauthorized", err)
	}
}

// TestCrossLoopTraffic runs SEND and REQUEST between connections on every pair of loops,
// concurrently, and checks nothing is lost, duplicated or misrouted.
func TestCrossLoopTraffic(t *testing.T) {
	s := startServer(t, server.Config{Loops: 2})
	addr := []string{s.Addr().String()}
	ctx := ctx5(t)
	const peers, perPair = 4, 50
	var received [peers]atomic.Int64
	clients := make([]*client.Client, peers)
	loops := map[int]bool{}
	for i := range peers {
		i := i
		clients[i] = dial(t, addr, client.Config{
			Name:      fmt.Sprintf("p%d", i),
			OnMessage: func(client.Message) { received[i].Add(1) },
			OnRequest: func(r *client.Request) { _ = r.Reply(r.Payload) },
		})
		if err := clients[i].Register(ctx, fmt.Sprintf("p%d", i)); err != nil {
			t.Fatal(err)
		}
		loops[loopOf(clients[i].ConnID())] = true
	}
	if len(loops) != 2 {
		t.Fatalf("peers landed on loops %v; want both", loops)
	}
	var wg sync.WaitGroup
	errs := make(chan error, peers*peers*perPair)
	for i := range peers {
		for j := range peers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range perPair {
					if err := clients[i].SendAck(ctx, fmt.Sprintf("p%d", j), []byte("m")); err != nil {
						errs <- err
						return
					}
					want := fmt.Sprintf("%d->%d#%d", i, j, k)
					out, err := clients[i].Request(ctx, fmt.Sprintf("p%d", j), []byte(want))
					if err != nil || string(out) != want {
						errs <- fmt.Errorf("request %s = %q, %v", want, out, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range peers {
		waitFor(t, "messages", func() bool { return received[i].Load() == peers*perPair })
	}
	st := s.Stats()
	if st.Requests != peers*peers*perPair || st.Responses != st.Requests {
		t.Fatalf("server counted %d requests, %d responses; want %d each", st.Requests, st.Responses, peers*peers*perPair)
	}
}

func TestRequestTimeout(t *testing.T) {
	s := startServer(t, server.Config{TickInterval: 10 * time.Millisecond})
	addr := []string{s.Addr().String()}
	ctx := ctx5(t)
	release := make(chan struct{})
	defer close(release)
	svc := dial(t, addr, client.Config{Name: "mute", OnRequest: func(r *client.Request) {
		go func() { <-release }() // never replies in time
	}})
	if err := svc.Register(ctx, "mute"); err != nil {
		t.Fatal(err)
	}
	caller := dial(t, addr, client.Config{Name: "caller", RequestTimeout: 100 * time.Millisecond})
	_, err := caller.Request(ctx, "mute", []byte("anyone?"))
	var se *client.ServerError
	if !errors.As(err, &se) || !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("Request to a mute service = %v; want the server's TIMEOUT", err)
	}
	waitFor(t, "timeout counted", func() bool { return s.Stats().RequestTimeouts == 1 })
}

// TestReconnectAndReregister stops one of two servers; the client moves to the other and
// gets its name back there.
func TestReconnectAndReregister(t *testing.T) {
	a, err := server.New(server.Config{Listen: "127.0.0.1:0", Loops: 1, ServerID: "a"}, server.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	b := startServer(t, server.Config{Loops: 1, ServerID: "b"})
	ctx := ctx5(t)
	c := dial(t, []string{a.Addr().String(), b.Addr().String()}, client.Config{Name: "roamer",
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
		OnRequest: func(r *client.Request) { _ = r.Reply([]byte("here")) }})
	if err := c.Register(ctx, "roamer"); err != nil {
		t.Fatal(err)
	}
	if c.ServerID() != "a" {
		t.Fatalf("connected to %q; want a", c.ServerID())
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "re-registration on b", func() bool { return b.Stats().Names == 1 && c.ServerID() == "b" })
	asker := dial(t, []string{b.Addr().String()}, client.Config{Name: "asker"})
	if out, err := asker.Request(ctx, "roamer", nil); err != nil || !bytes.Equal(out, []byte("here")) {
		t.Fatalf("Request after failover = %q, %v", out, err)
	}
}

// TestClientRidesThroughDrain drains one of two nodes under traffic: the service moves to
// the other node with its name, and the caller's requests keep being answered.
func TestClientRidesThroughDrain(t *testing.T) {
	b := startServer(t, server.Config{Loops: 1, ServerID: "b"})
	a := startServer(t, server.Config{Loops: 1, ServerID: "a", Peers: b.Addr().String()})
	ctx := ctx5(t)
	svc := dial(t, []string{a.Addr().String()}, client.Config{Name: "svc",
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
		OnRequest: func(r *client.Request) { _ = r.Reply([]byte("ok")) }})
	if err := svc.Register(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	caller := dial(t, []string{b.Addr().String()}, client.Config{Name: "caller"})
	drained := make(chan error, 1)
	go func() { drained <- a.Drain(context.Background(), 500*time.Millisecond) }()
	waitFor(t, "svc on b", func() bool { return svc.ServerID() == "b" && b.Stats().Names == 1 })
	if out, err := caller.Request(ctx, "svc", nil); err != nil || string(out) != "ok" {
		t.Fatalf("Request after the drain = %q, %v", out, err)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}
