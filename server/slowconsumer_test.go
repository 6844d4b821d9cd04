package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/shard"
)

// The slow-consumer promise, end to end over loopback: a receiver that stops reading
// while others SEND+ACK to it loses nothing that was acknowledged. Every SEND is answered
// exactly once; what was answered OK is exactly what the receiver reads, as whole frames,
// when it finally reads until EOF; then comes ERROR SLOW_CONSUMER (closing) and a clean
// EOF, not a reset; every refusal is QUEUE_FULL (NO_ROUTE once the receiver is gone) and
// switchboard_queue_full_total counts the QUEUE_FULLs.

// slowConsumerConfig: small caps and socket buffers so a test reaches them quickly, zones
// out of reach (shedding would answer BUSY), a short slow-consumer timeout (the detection
// timer and the grace for the receiver to read what it was sent).
func slowConsumerConfig(maxPending, maxPendingBytes int) Config {
	return withLimits(Config{Loops: 2, TickInterval: 10 * time.Millisecond, SlowConsumerTimeout: time.Second,
		MaxPending: maxPending, MaxPendingBytes: maxPendingBytes, SocketSendBuffer: 32 << 10},
		limits.Config{ZoneYellow: 100, ZoneOrange: 101, ZoneRed: 102})
}

// queueFullMetric is switchboard_queue_full_total as /metrics shows it.
func queueFullMetric(t *testing.T, s *Server) string {
	t.Helper()
	var b bytes.Buffer
	s.WritePrometheus(&b)
	for line := range bytes.Lines(b.Bytes()) {
		if v, ok := bytes.CutPrefix(line, []byte("switchboard_queue_full_total ")); ok {
			return string(bytes.TrimSpace(v))
		}
	}
	t.Fatal("no switchboard_queue_full_total in /metrics")
	return ""
}

// TestSlowConsumerAckedAreDelivered: a receiver on loop 0 stops reading; one sender on its
// loop and one on the other SEND+ACK to it until they are refused. What they were told OK
// is exactly what the receiver reads, in order, when it reads again; the rest was refused.
func TestSlowConsumerAckedAreDelivered(t *testing.T) {
	for _, tc := range []struct {
		name                string
		size, window, max   int
		maxPending, maxByte int
	}{
		{"small", 64, 32, 200_000, 500, 1 << 20},
		{"64KiB", 64 << 10, 8, 4_000, 500, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, slowConsumerConfig(tc.maxPending, tc.maxByte))
			sink := registeredOn(t, s, "sink", 0)
			sink.StopReading()
			senders := []*rawpeer.Peer{connectOn(t, s, "same-loop", 0), connectOn(t, s, "cross-loop", 1)}

			tallies := make([]rawpeer.Tally, len(senders))
			var wg sync.WaitGroup
			for i, p := range senders {
				wg.Go(func() { tallies[i] = p.SendAcked("sink", tc.size, tc.window, tc.max) })
			}
			wg.Wait()

			queueFull := 0
			for i, tl := range tallies {
				if tl.Err != nil {
					t.Fatalf("sender %d: %v", i, tl.Err)
				}
				if tl.Sent != len(tl.OK)+tl.QueueFull+tl.NoRoute {
					t.Fatalf("sender %d: sent %d = %d OK + %d QUEUE_FULL + %d NO_ROUTE does not add up",
						i, tl.Sent, len(tl.OK), tl.QueueFull, tl.NoRoute)
				}
				if tl.QueueFull+tl.NoRoute == 0 {
					t.Fatalf("sender %d: %d SENDs to a receiver that never reads were all acknowledged", i, tl.Sent)
				}
				queueFull += tl.QueueFull
				t.Logf("sender %d (%s): sent %d, OK %d, QUEUE_FULL %d, NO_ROUTE %d",
					i, senders[i].Conn.LocalAddr(), tl.Sent, len(tl.OK), tl.QueueFull, tl.NoRoute)
			}
			if queueFull == 0 {
				t.Errorf("no sender was told QUEUE_FULL; want QUEUE_FULL while the receiver is a slow consumer")
			}

			r := sink.ReadToEOF()
			for i, p := range senders {
				got, want := r.Corrs[p.ConnID], tallies[i].OK
				if !slices.Equal(got, want) {
					t.Errorf("sender %d: receiver read %d MESSAGEs, %d acknowledged; first difference at %d",
						i, len(got), len(want), rawpeer.FirstDiff(got, want))
				}
				delete(r.Corrs, p.ConnID)
			}
			if len(r.Corrs) != 0 {
				t.Errorf("MESSAGEs from unknown senders: %v", r.Corrs)
			}
			rawpeer.CheckClosedCleanly(t, r)

			waitFor(t, "the slow consumer counted", func() bool { return s.Stats().SlowConsumers == 1 })
			if got := s.Stats().QueueFull; got != uint64(queueFull) {
				t.Errorf("Stats().QueueFull = %d; want %d (the QUEUE_FULLs the senders got)", got, queueFull)
			}
			if got := queueFullMetric(t, s); got != fmt.Sprint(queueFull) {
				t.Errorf("switchboard_queue_full_total %s; want %d", got, queueFull)
			}
		})
	}
}

// TestSlowConsumerPingingReader: a receiver that keeps sending PINGs but stops reading is
// not idle, but its output does not drain: after the slow-consumer timeout it gets ERROR
// SLOW_CONSUMER after everything it was sent, as a whole frame, and a clean close. It keeps
// pinging until it has read the EOF; the server ignores that input instead of resetting.
func TestSlowConsumerPingingReader(t *testing.T) {
	s := startServer(t, slowConsumerConfig(1<<20, 1<<30))
	sink := registeredOn(t, s, "sink", 0)
	sink.StopReading()
	src := connectOn(t, s, "src", 1)

	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		ping := codec.AppendFrame(nil, codec.TypePing, 0, 7, nil)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			_ = sink.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := sink.Conn.Write(ping); err != nil {
				return
			}
		}
	}()

	// 4 MiB: more than the sockets hold, far below the caps; only the timer can trip. On
	// a loaded machine sending the 4 MiB can take longer than the timer (1 s): the SENDs
	// after it get QUEUE_FULL or NO_ROUTE, which is as correct, so the test counts
	// outcomes rather than expecting all 64 OK.
	tl := src.SendAcked("sink", 64<<10, 64, 64)
	if tl.Err != nil || len(tl.OK) == 0 || len(tl.OK)+tl.QueueFull+tl.NoRoute != tl.Sent || tl.Sent != 64 {
		t.Fatalf("sender: %d OK of %d, %d QUEUE_FULL, %d NO_ROUTE, err %v; want 64 answered, some OK",
			len(tl.OK), tl.Sent, tl.QueueFull, tl.NoRoute, tl.Err)
	}
	waitFor(t, "the slow-consumer timer", func() bool { return s.Stats().SlowConsumers == 1 })

	r := sink.ReadToEOF()
	close(stop)
	<-pinged
	if got := r.Corrs[src.ConnID]; !slices.Equal(got, tl.OK) {
		t.Errorf("receiver read %d MESSAGEs, %d acknowledged; first difference at %d",
			len(got), len(tl.OK), rawpeer.FirstDiff(got, tl.OK))
	}
	rawpeer.CheckClosedCleanly(t, r)
	t.Logf("read %d MESSAGEs and %d PONGs before the ERROR", len(r.Corrs[src.ConnID]), r.Pongs)
}

// TestSlowConsumerSteadyReader: a receiver that keeps reading behind a standing backlog
// (more than the sockets hold, fewer messages than max-pending) is not a slow consumer,
// however many messages pass through and however long the server's outbound buffer for it
// never empties. Before the count was kept against a mark (outbox.go), every message
// since the buffer was last empty counted against max-pending ("count": refused
// QUEUE_FULL at message 201 and closed), and the buffer's not emptying for the
// slow-consumer timeout closed it too ("timer": at the timeout, while each message waited < 1 s).
func TestSlowConsumerSteadyReader(t *testing.T) {
	const (
		size = 4 << 10
		// 256 KiB: more than the sockets below hold. The count against max-pending may be
		// up to twice what waits (the messages before the mark are counted until the
		// socket passes it: outbox.go), so max-pending is over twice this.
		backlog = 64
	)
	for _, tc := range []struct {
		name       string
		maxPending int
		rounds     int
		pace       time.Duration
	}{
		{"count", 200, 300, 0},
		// Paced to outlast the slow-consumer timeout (6 s): a message waits behind the
		// backlog ~64 rounds (~0.8 s on an idle machine), well under it; a loaded
		// machine may make a round up to ~90 ms before that is too long.
		{"timer", 1 << 20, 700, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := slowConsumerConfig(tc.maxPending, 1<<30)
			cfg.SlowConsumerTimeout = 6 * time.Second
			s := startServer(t, cfg)
			sink := registeredOn(t, s, "sink", 0)
			sink.StopReading()
			src := connectOn(t, s, "src", 1)
			steadyReader(t, s, src, sink, size, backlog, tc.rounds, tc.pace)
		})
	}
}

// steadyReader builds a backlog of backlog messages from src to sink, then runs rounds of
// one SEND+ACK and one MESSAGE read, pace apart, and checks that every message arrives in
// order, gnet's outbound buffer for sink never empties, and no slow consumer is counted.
func steadyReader(t *testing.T, s *Server, src, sink *rawpeer.Peer, size, backlog, rounds int, pace time.Duration) {
	t.Helper()
	tl := src.SendAcked("sink", size, backlog, backlog)
	if tl.Err != nil || len(tl.OK) != backlog {
		t.Fatalf("backlog: %d OK of %d (%d QUEUE_FULL), err %v", len(tl.OK), backlog, tl.QueueFull, tl.Err)
	}
	expect := uint32(1)
	read := func() {
		t.Helper()
		f, err := sink.Read()
		if err != nil {
			t.Fatalf("receiver, expecting MESSAGE %d: %v", expect, err)
		}
		if f.Type != codec.TypeMessage {
			if e, err := codec.ParseError(f.Body); err == nil && f.Type == codec.TypeError {
				t.Fatalf("receiver got ERROR %v (%q) before MESSAGE %d", e.Code, e.Reason, expect)
			}
			t.Fatalf("receiver got %v; want MESSAGE %d", f.Type, expect)
		}
		_, _, payload, err := codec.ParseMessage(f.Body)
		if err != nil || binary.BigEndian.Uint32(payload) != expect {
			t.Fatalf("MESSAGE %d (err %v); want %d in order", binary.BigEndian.Uint32(payload), err, expect)
		}
		expect++
	}
	outbound := func() int { // gnet's outbound buffer for the receiver, read on its loop
		got := make(chan int, 1)
		lp := s.loopAt(loopOf(sink))
		if err := lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			n := -1
			if c, ok := lp.conns.Get(shard.ConnID(sink.ConnID)); ok {
				n = c.gc.OutboundBuffered()
			}
			got <- n
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		return <-got
	}
	payload := make([]byte, size)
	start := time.Now()
	looks, empty := 0, 0
	for i := range rounds {
		corr := uint32(backlog + i + 1)
		binary.BigEndian.PutUint32(payload, corr)
		src.Write(codec.AppendSend(nil, codec.FlagAck, corr, "sink", payload))
		expectOutcomes(t, src, outcome{typ: codec.TypeOK, corr: corr})
		read()
		if i%20 == 0 {
			looks++
			if outbound() <= 0 {
				empty++
			}
		}
		time.Sleep(pace)
	}
	// The kernel's share of the backlog varies (a receive window advertised before the
	// buffer was shrunk): a look may find gnet's buffer empty now and then, but a
	// standing backlog is what is tested.
	if empty > looks/4 {
		t.Fatalf("the server's outbound buffer was seen empty in %d of %d looks: no standing backlog, nothing shown", empty, looks)
	}
	for int(expect) <= backlog+rounds {
		read()
	}
	if n := s.Stats().SlowConsumers; n != 0 {
		t.Fatalf("%d slow consumers; want none", n)
	}
	t.Logf("%d messages through a backlog of %d in %v", backlog+rounds, backlog, time.Since(start).Round(time.Millisecond))
}

// TestSlowConsumerBurstInOneRead: more messages than max-pending, read from one sender in
// one go and routed to a receiver on the same loop that reads everything, are delivered:
// what the loop has not written yet is not the receiver's backlog. (Before, the messages
// queued during the one callback counted against max-pending and the 101st made a reader
// that had not yet been sent anything a slow consumer; with route credit on, a resumed
// sender's buffered input did this under load.)
func TestSlowConsumerBurstInOneRead(t *testing.T) {
	const maxPending, n = 100, 300
	s := startServer(t, slowConsumerConfig(maxPending, 1<<30))
	sink := registeredOn(t, s, "sink", 0)
	src := connectOn(t, s, "src", 0)
	var batch []byte
	payload := make([]byte, 4)
	for corr := uint32(1); corr <= n; corr++ {
		binary.BigEndian.PutUint32(payload, corr)
		batch = codec.AppendSend(batch, codec.FlagAck, corr, "sink", payload)
	}
	src.Write(batch) // ~9 KiB: one read on the server
	want := make([]outcome, n)
	for i := range want {
		want[i] = outcome{typ: codec.TypeOK, corr: uint32(i + 1)}
	}
	expectOutcomes(t, src, want...)
	for corr := uint32(1); corr <= n; corr++ {
		f := sink.Expect(codec.TypeMessage)
		if _, _, p, err := codec.ParseMessage(f.Body); err != nil || binary.BigEndian.Uint32(p) != corr {
			t.Fatalf("MESSAGE %d (err %v); want %d", binary.BigEndian.Uint32(p), err, corr)
		}
	}
	if got := s.Stats().SlowConsumers; got != 0 {
		t.Fatalf("%d slow consumers; want none", got)
	}
}
