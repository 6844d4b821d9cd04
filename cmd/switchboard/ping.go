package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func runPing(c *cli, args []string) int {
	fs := newFlags("ping", "switchboard ping [flags]",
		"Sends a PING to a node every --interval and prints each round trip, like ping(8); on\n"+
			"SIGINT, or after --count pings, prints the summary: sent, received, loss and\n"+
			"min/avg/max/mdev of the round trips. A round trip includes any wait for a reconnect.\n"+
			"A ping that gets no PONG within --timeout counts as lost.\n\n"+
			"Output: \"pong from NODE: seq=N time=T ms\" per PING; --json: one object per PING, then\n"+
			"one with the summary.\n\n"+
			clientExitCodes+"\n"+
			"  Every PONG received: 0; otherwise the status of the last failure.")
	count := fs.Int("count", 0, "stop after this many pings; 0: until SIGINT or SIGTERM")
	interval := fs.Duration("interval", time.Second, "wait between pings")
	fs.Section("Pings", "count", "interval")
	cf := addClientFlags(fs)
	pos, code, done := parseInterspersed(c, fs, args)
	if done {
		return code
	}
	setup, err := cf.resolve(fs, c.environ, "switchboard-ping")
	switch {
	case len(pos) > 0:
		fs.Fail(c.stderr, fmt.Sprintf("unexpected argument %q: ping takes only flags (the node is --server)", pos[0]))
		return exitUsage
	case *count < 0:
		fs.Fail(c.stderr, fmt.Sprintf("--count: want 0 or more, got %d", *count))
		return exitUsage
	case *interval <= 0:
		fs.Fail(c.stderr, fmt.Sprintf("--interval: want a positive duration, got %v", *interval))
		return exitUsage
	case err != nil:
		fs.Fail(c.stderr, err.Error())
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl, err := setup.dial(ctx, c, setup.cfg, slog.LevelWarn)
	if err != nil {
		return report(c, setup.json, "ping", "", err)
	}
	defer cl.Close()
	if !setup.json {
		fmt.Fprintf(c.stdout, "PING %s (node id %s)\n", cl.Addr(), cl.ServerID())
	}
	var st rttStats
	var lastErr error
	start := time.Now()
	for seq := 1; *count == 0 || seq <= *count; seq++ {
		if seq > 1 {
			t := time.NewTimer(*interval)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		if ctx.Err() != nil {
			break
		}
		st.sent++
		rtt, err := cl.Ping(ctx)
		if ctx.Err() != nil {
			st.sent-- // cut short by the signal: neither received nor lost
			break
		}
		node := cl.Addr()
		if err != nil {
			lastErr = err
			if setup.json {
				writeJSONLine(c.stdout, map[string]any{"seq": seq, "error": describe(err, node)})
			} else {
				fmt.Fprintf(c.stdout, "no pong: seq=%d: %v\n", seq, err)
			}
			continue
		}
		st.add(rtt)
		if setup.json {
			writeJSONLine(c.stdout, map[string]any{"seq": seq, "node": node, "rtt_ms": millisOf(rtt)})
		} else {
			fmt.Fprintf(c.stdout, "pong from %s: seq=%d time=%.3f ms\n", node, seq, millisOf(rtt))
		}
	}
	st.print(c, setup, time.Since(start))
	if st.received == st.sent {
		return exitOK
	}
	return exitCode(lastErr)
}

// rttStats accumulates round trips as ping(8) summarises them.
type rttStats struct {
	sent, received int
	min, max, sum  time.Duration
	sumSq          float64 // of milliseconds
}

func (s *rttStats) add(d time.Duration) {
	if s.received == 0 || d < s.min {
		s.min = d
	}
	s.max = max(s.max, d)
	s.sum += d
	ms := millisOf(d)
	s.sumSq += ms * ms
	s.received++
}

// summary returns the average and the mean deviation (ping(8)'s mdev: the standard
// deviation) in milliseconds.
func (s *rttStats) summary() (avg, mdev float64) {
	if s.received == 0 {
		return 0, 0
	}
	n := float64(s.received)
	// The mean at the same microsecond resolution as min and max, so that
	// min <= avg <= max holds in what is printed.
	avg = millisOf(s.sum / time.Duration(s.received))
	return avg, math.Sqrt(max(0, s.sumSq/n-avg*avg))
}

func (s *rttStats) print(c *cli, setup clientSetup, elapsed time.Duration) {
	loss := 0.0
	if s.sent > 0 {
		loss = 100 * float64(s.sent-s.received) / float64(s.sent)
	}
	avg, mdev := s.summary()
	if setup.json {
		obj := map[string]any{"sent": s.sent, "received": s.received, "loss_percent": loss,
			"elapsed_ms": millisOf(elapsed)}
		if s.received > 0 {
			obj["min_ms"], obj["avg_ms"], obj["max_ms"], obj["mdev_ms"] = millisOf(s.min), avg, millisOf(s.max), mdev
		}
		writeJSONLine(c.stdout, obj)
		return
	}
	fmt.Fprintf(c.stdout, "--- switchboard ping statistics ---\n%d sent, %d received, %.0f%% lost, time %v\n",
		s.sent, s.received, loss, elapsed.Round(time.Millisecond))
	if s.received > 0 {
		fmt.Fprintf(c.stdout, "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n", millisOf(s.min), avg, millisOf(s.max), mdev)
	}
}
