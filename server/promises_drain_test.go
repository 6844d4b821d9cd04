package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// expectGoAwayThenClose fails unless p's next frame is a GOAWAY and the server then
// closes the connection without sending anything else.
func expectGoAwayThenClose(t testing.TB, p *rawpeer.Peer) {
	t.Helper()
	expectOutcomes(t, p, outcome{typ: codec.TypeGoAway})
	expectClosedQuietly(t, p)
}

// expectClosedQuietly fails unless the server closes p's connection without sending
// another frame first.
func expectClosedQuietly(t testing.TB, p *rawpeer.Peer) {
	t.Helper()
	f, err := p.ReadTimeout(10 * time.Second)
	switch {
	case err == nil:
		t.Fatalf("got %v corr %d after GOAWAY; want the connection closed", f.Type, f.Corr)
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open 10 s after GOAWAY")
		}
		// A reset is a close too.
	}
}

// TestDrainReentry: Drain twice at once, Drain after Drain, Drain and Shutdown in either
// order, and Shutdown twice neither panic nor deadlock nor fail; every client gets exactly
// one GOAWAY and then its connection is closed.
func TestDrainReentry(t *testing.T) {
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return c
	}
	tests := []struct {
		name string
		// stop drains and/or shuts s down; peers are read meanwhile by the test.
		stop func(t *testing.T, s *Server, peers []*rawpeer.Peer)
	}{
		{"drain-twice-at-once-then-shutdown", func(t *testing.T, s *Server, peers []*rawpeer.Peer) {
			done := make(chan error, 2)
			for range 2 {
				go func() { done <- s.Drain(ctx(t), 10*time.Second) }()
			}
			// Both drains run; all peers are told once. Shutdown cuts the drain period short.
			for _, p := range peers {
				expectOutcomes(t, p, outcome{typ: codec.TypeGoAway})
			}
			if err := s.Shutdown(ctx(t)); err != nil {
				t.Fatalf("Shutdown during Drain = %v", err)
			}
			for range 2 {
				if err := <-done; err != nil {
					t.Fatalf("Drain = %v", err)
				}
			}
			for _, p := range peers {
				expectClosedQuietly(t, p) // no second GOAWAY from Shutdown
			}
		}},
		{"drain-after-drain", func(t *testing.T, s *Server, peers []*rawpeer.Peer) {
			done := make(chan error, 1)
			go func() { done <- s.Drain(ctx(t), 50*time.Millisecond) }()
			for _, p := range peers {
				expectGoAwayThenClose(t, p)
			}
			if err := <-done; err != nil {
				t.Fatalf("Drain = %v", err)
			}
			if err := s.Drain(ctx(t), time.Second); err != nil {
				t.Fatalf("second Drain = %v", err)
			}
			late := rawpeer.Dial(t, s.Addr().String()) // still draining: told, not reset
			late.ExpectError(codec.CodeShuttingDown)
		}},
		{"shutdown-then-drain", func(t *testing.T, s *Server, peers []*rawpeer.Peer) {
			if err := s.Shutdown(ctx(t)); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			for _, p := range peers {
				expectGoAwayThenClose(t, p)
			}
			if err := s.Drain(ctx(t), time.Second); err != nil {
				t.Fatalf("Drain after Shutdown = %v", err)
			}
			if err := s.Shutdown(ctx(t)); err != nil {
				t.Fatalf("second Shutdown = %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, Config{Loops: 2})
			peers := []*rawpeer.Peer{connectOn(t, s, "p0", 0), connectOn(t, s, "p1", 1),
				connectOn(t, s, "p2", 0), connectOn(t, s, "p3", 1)}
			tt.stop(t, s, peers)
			waitFor(t, "no connections", func() bool { return s.Stats().Connections == 0 })
		})
	}
	t.Run("never-started", func(t *testing.T) {
		s, err := New(Config{Listen: "127.0.0.1:0"}, WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Drain(ctx(t), time.Second); err != nil {
			t.Fatalf("Drain before Start = %v", err)
		}
		if err := s.Shutdown(ctx(t)); err != nil {
			t.Fatalf("Shutdown before Start = %v", err)
		}
	})
}
