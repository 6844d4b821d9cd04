// Package testserver starts in-process switchboard servers for tests outside the server
// package (the server's own tests cannot import it: that would be an import cycle).
//
// # Concurrency
//
// Start and WaitFor are called from the test goroutine.
//
// The server package's own tests keep a copy of Start (startServer in server_test.go),
// for the same import-cycle reason; the two must start servers the same way.
package testserver

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/wait"
	"github.com/switchboard/switchboard/server"
)

// Start starts a server on 127.0.0.1:0 with cfg's zero fields defaulted (two event loops,
// logs discarded) and shuts it down when the test ends, failing the test
// if the shutdown does not complete. A zero loop-lag budget becomes an hour, so that a
// loaded machine's loop lag cannot shed frames or refuse connections in a test of
// something else.
func Start(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	if cfg.LoopLagBudget == 0 {
		cfg.LoopLagBudget = time.Hour
	}
	s, err := server.New(cfg, server.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
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

// WaitFor polls cond until it holds, failing the test after wait.Deadline: wait.For,
// here for the tests that already start their server with this package.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	wait.For(t, what, cond)
}
