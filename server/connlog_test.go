package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConnErrorsLoggedRateLimited: protocol violations are logged off the loop, at most
// connLogRate per second, and the rest are counted. The logger's clock is frozen, so the
// bucket never refills and exactly its burst is logged however slow the machine is.
func TestConnErrorsLoggedRateLimited(t *testing.T) {
	var out syncBuffer
	s, err := New(Config{Listen: "127.0.0.1:0", Loops: 2}, WithLogger(slog.New(slog.NewTextHandler(&out, nil))))
	if err != nil {
		t.Fatal(err)
	}
	frozen := s.clock()
	s.connLog.clock = func() int64 { return frozen }
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	const bad = 40
	for i := 0; i < bad; i++ {
		p := rawpeer.Dial(t, s.Addr().String())
		p.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 1, nil)) // before HELLO
		p.ExpectError(codec.CodeHelloRequired)
	}
	waitFor(t, "all reports handled", func() bool {
		logged := strings.Count(out.String(), "connection closed by the server")
		return uint64(logged)+s.connLog.suppressed.Load() == bad
	})
	logged := strings.Count(out.String(), "connection closed by the server")
	if logged != connLogRate || s.connLog.suppressed.Load() != bad-connLogRate {
		t.Fatalf("%d lines logged, %d suppressed for %d violations; want %d and %d",
			logged, s.connLog.suppressed.Load(), bad, connLogRate, bad-connLogRate)
	}
	if !strings.Contains(out.String(), "code=HELLO_REQUIRED") {
		t.Fatalf("log lacks the code:\n%s", out.String())
	}
}
