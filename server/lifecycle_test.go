package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// TestServeListener: Serve takes a listener the caller made, serves on it, and returns
// ErrServerClosed once Shutdown has finished, as net/http's Serve does.
func TestServeListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Loops: 2}, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	waitFor(t, "serving", func() bool { return s.Addr() != nil })
	if got, want := s.Addr().String(), ln.Addr().String(); got != want {
		t.Fatalf("Addr %s; want the given listener's %s", got, want)
	}
	p := rawpeer.Dial(t, ln.Addr().String())
	p.Hello("p", "")
	p.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 1, []byte("x")))
	p.Expect(codec.TypeEchoReply)
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v while serving", err)
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v; want ErrServerClosed", err)
	}
	if err := s.Start(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Start after Shutdown = %v; want ErrServerClosed", err)
	}
}

func TestStartListenerNotTCP(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := New(Config{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StartListener(ln); !errors.Is(err, ErrNotTCP) {
		t.Fatalf("StartListener(unix) = %v; want ErrNotTCP", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestEveryLoopTickedWithoutConnections: Start meets every event loop before any client
// connects, so each is ticked (its timer wheel advances and its lag is sampled) while it
// holds no connection.
func TestEveryLoopTickedWithoutConnections(t *testing.T) {
	const loops = 3
	s := startServer(t, Config{Loops: loops, TickInterval: 5 * time.Millisecond})
	if n := int(s.nloops.Load()); n != loops {
		t.Fatalf("%d loops known after Start; want %d", n, loops)
	}
	seen := map[*loop]bool{}
	for i := 0; i < loops; i++ {
		lp := s.loopAt(i)
		if lp == nil || seen[lp] || s.loopFor(lp.el) != lp {
			t.Fatalf("loop %d: %v (duplicate or not found by its event loop)", i, lp)
		}
		seen[lp] = true
	}
	// The wheel is owned by its loop; read its position there.
	for i := 0; i < loops; i++ {
		lp := s.loopAt(i)
		waitFor(t, "loop ticked", func() bool {
			pos := make(chan uint64, 1)
			_ = lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error { pos <- lp.wheel.now; return nil }))
			return <-pos >= 2
		})
	}
	if st := s.Stats(); st.Connections != 0 {
		t.Fatalf("%d connections: the loop probes must be gone", st.Connections)
	}
}
