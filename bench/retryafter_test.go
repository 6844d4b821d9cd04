package bench

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// TestRetryAfterHonoured: with --retry-after, a closed-loop connection told BUSY with a
// retry-after sends nothing new until it has passed. The fake server refuses every
// fifth ECHO with BUSY, retry-after 200 ms, and measures the gap from each BUSY to the
// next ECHO it reads (one in flight: nothing else was in flight). With the flag, no gap
// is shorter than 200 ms; and every ECHO is answered or refused (nothing lost). A
// retry-after that ends after the load leaves the run to end as usual, not at --grace.
func TestRetryAfterHonoured(t *testing.T) {
	const wait = 200 * time.Millisecond
	for _, tc := range []struct {
		name    string
		retryMs uint32
	}{
		{"waits within the load", uint32(wait / time.Millisecond)},
		{"wait past the load's end", 60_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				gaps []time.Duration
			)
			t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
			wg.Go(func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					g := busyFakeNode(nc, 5, tc.retryMs)
					mu.Lock()
					gaps = g
					mu.Unlock()
				})
			})
			start := time.Now()
			m, _ := runBench(t, inProcess(), "echo", "--addr", ln.Addr().String(), "--conns", "1",
				"--pipeline", "1", "--duration", "1s", "--grace", "20s", "--retry-after")
			took := time.Since(start)
			_ = ln.Close()
			wg.Wait()
			sent, recv, busy := num(t, m, "messages.sent"), num(t, m, "messages.received"), num(t, m, "messages.errors_by_code.BUSY")
			if lost := num(t, m, "messages.lost"); lost != 0 || sent != recv+busy || busy < 1 {
				t.Fatalf("sent %v, received %v, BUSY %v, lost %v; want sent = received + BUSY, at least one BUSY, none lost", sent, recv, busy, lost)
			}
			mu.Lock()
			defer mu.Unlock()
			for i, g := range gaps {
				if g < time.Duration(tc.retryMs)*time.Millisecond {
					t.Errorf("ECHO %v after BUSY %d with retry-after %d ms", g, i+1, tc.retryMs)
				}
			}
			if tc.retryMs == 60_000 {
				// One BUSY, then nothing more; the run ends after the load and a quiet
				// period, long before --grace (20 s) or the retry-after.
				if busy != 1 || len(gaps) != 0 || took > 10*time.Second {
					t.Fatalf("BUSY %v, ECHOs after it %d, run took %v; want 1, 0, the load's second and a quiet period", busy, len(gaps), took)
				}
			} else if len(gaps) < 2 {
				t.Fatalf("%d ECHOs after a BUSY in 1 s; want at least 2", len(gaps))
			}
		})
	}
}

// busyFakeNode welcomes one connection and answers its ECHOs, every nth with ERROR BUSY
// (its corr, retry-after retryMs, not closing); it returns, for each BUSY followed by
// another ECHO, the time from writing the BUSY to reading that ECHO.
func busyFakeNode(nc net.Conn, nth int, retryMs uint32) (gaps []time.Duration) {
	defer nc.Close()
	r := codec.NewReader(nc, 0, 0)
	if _, err := r.Next(); err != nil { // HELLO
		return
	}
	if _, err := nc.Write(codec.AppendWelcome(nil, 0, codec.Welcome{Version: codec.Version, ConnID: 1,
		MaxFrame: codec.DefaultMaxFrame, MaxPending: 1000, ServerID: []byte("fake")})); err != nil {
		return
	}
	var busyAt time.Time
	for n := 1; ; n++ {
		f, err := r.Next()
		if err != nil {
			return gaps
		}
		if f.Type != codec.TypeEcho {
			continue
		}
		if !busyAt.IsZero() {
			gaps = append(gaps, time.Since(busyAt))
			busyAt = time.Time{}
		}
		if n%nth == 0 {
			busyAt = time.Now() // before the write: the client cannot have it earlier
			if _, err := nc.Write(codec.AppendError(nil, f.Corr, codec.ErrorBody{Code: codec.CodeBusy,
				RetryAfterMs: retryMs, Reason: "fake"})); err != nil {
				return gaps
			}
			continue
		}
		if _, err := nc.Write(codec.AppendFrame(nil, codec.TypeEchoReply, 0, f.Corr, f.Body)); err != nil {
			return gaps
		}
	}
}
