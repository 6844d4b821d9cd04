package server

import (
	"net/netip"
	"sync/atomic"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
)

// connLogRate is how many per-connection error lines per second reach the log; the rest
// are counted in switchboard_log_suppressed_total.
const connLogRate = 10

// connLogEntry is one per-connection error worth an operator's eye.
type connLogEntry struct {
	ip     netip.Addr
	reason string
	code   codec.ErrorCode
}

// connLogger takes per-connection error reports from event loops without blocking them:
// a loop hands the entry to a bounded channel (dropping and counting when it is full),
// and one goroutine, tracked by the server, rate-limits and writes them.
type connLogger struct {
	ch         chan connLogEntry
	suppressed atomic.Uint64
	// clock paces the rate limit (monotonic ns); immutable after New. The server's clock,
	// or a frozen one in tests, so that what is logged does not depend on the machine's speed.
	clock func() int64
}

// report is called on an event loop; it never blocks.
func (l *connLogger) report(e connLogEntry) {
	select {
	case l.ch <- e:
	default:
		l.suppressed.Add(1)
	}
}

// run writes entries at most connLogRate per second until ch is closed.
func (s *Server) runConnLogger() {
	defer s.logWG.Done()
	tb := limits.NewTokenBucket(connLogRate, connLogRate)
	for e := range s.connLog.ch {
		if !tb.Allow(s.connLog.clock(), 1) {
			s.connLog.suppressed.Add(1)
			continue
		}
		s.log.Warn("connection closed by the server", "code", e.code.String(), "reason", e.reason,
			"ip", e.ip.String(), "suppressed_total", s.connLog.suppressed.Load())
	}
}
