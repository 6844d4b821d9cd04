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
// connLogRate per second, and the rest are counted.
func TestConnErrorsLoggedRateLimited(t *testing.T) {
	var out syncBuffer
	s, err := New(Config{Listen: "127.0.0.1:0", Loops: 2}, WithLogger(slog.New(slog.NewTextHandler(&out, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	const bad = 40
	start := time.Now()
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
	// The bucket holds connLogRate and refills connLogRate per second.
	allowed := connLogRate + int(time.Since(start).Seconds()*connLogRate) + 1
	if logged < 1 || logged > allowed || logged == bad {
		t.Fatalf("%d lines logged for %d violations; want at most %d", logged, bad, allowed)
	}
	if !strings.Contains(out.String(), "code=HELLO_REQUIRED") {
		t.Fatalf("log lacks the code:\n%s", out.String())
	}
}
