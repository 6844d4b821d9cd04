package server

import (
	"reflect"
	"strconv"
	"testing"
)

// socketConn is a gnet.Conn whose socket takes only what the test lets it: Write keeps
// everything in the outbound buffer, take moves bytes from it to the (imaginary) socket.
type socketConn struct {
	fakeConn
	buffered int
}

func (s *socketConn) Write(p []byte) (int, error) { s.buffered += len(p); return len(p), nil }
func (s *socketConn) OutboundBuffered() int       { return s.buffered }
func (s *socketConn) take(n int)                  { s.buffered -= min(n, s.buffered) }

// queueMsgs queues n messages of size bytes each for c and flushes them, as a ring drain
// does with deliveries.
func queueMsgs(c *conn, n, size int) {
	for range n {
		b := c.buf()
		b.B = append(b.B, make([]byte, size)...)
		c.addMessage()
	}
	c.flush()
}

// TestOutboxPendingCount: the messages counted against max-pending are those the socket
// has not taken, counted against a mark (outbox.go): exact once the socket is past the
// mark, never below what truly waits, and for a reader that keeps taking its output never
// more than what waits plus one mark's worth, however long the outbound buffer stays
// non-empty. (Before the mark, the count was every message since the buffer was last
// empty: a steady reader behind a standing backlog was counted up without end.)
func TestOutboxPendingCount(t *testing.T) {
	s, loops := newTestLoops(t, 1)
	_ = s
	lp := loops[0]
	c, _ := addConn(t, lp, "reader")
	sc := &socketConn{fakeConn: fakeConn{c: c}}
	c.gc = sc
	const size = 100
	check := func(step string, wantPending int32, wantBacklog bool) {
		t.Helper()
		c.sync()
		if c.pending != wantPending || c.backlogged != wantBacklog || len(lp.backlogs) != map[bool]int{false: 0, true: 1}[wantBacklog] {
			t.Fatalf("%s: pending %d, backlogged %v (%d marks); want %d, %v", step, c.pending, c.backlogged, len(lp.backlogs), wantPending, wantBacklog)
		}
		if got := lp.stats.pending.Load(); got != int64(c.pending) {
			t.Fatalf("%s: loop's pending %d; want the connection's %d", step, got, c.pending)
		}
	}

	queueMsgs(c, 10, size)
	check("10 written, none taken", 10, true)
	sc.take(5 * size)
	check("5 taken, the mark not reached", 10, true) // an upper bound until the mark
	queueMsgs(c, 10, size)
	check("10 more written", 20, true)
	sc.take(5 * size)
	check("the socket past the mark", 10, true) // exact: the 10 after the mark wait
	sc.take(10 * size)
	check("everything taken", 0, false)

	// A standing backlog: 30 messages wait, and the reader takes one for each one written.
	queueMsgs(c, 30, size)
	most := int32(0)
	for range 1000 {
		queueMsgs(c, 1, size)
		sc.take(size)
		c.sync()
		if c.pending < int32(sc.buffered/size) {
			t.Fatalf("pending %d below the %d messages in the buffer", c.pending, sc.buffered/size)
		}
		most = max(most, c.pending)
	}
	if most > 60 {
		t.Fatalf("a reader taking its output behind a backlog of 30 was counted at up to %d; want at most 60", most)
	}
	sc.take(sc.buffered)
	check("backlog taken", 0, false)

	// Messages not yet written (in frames) stay counted; their connection's own answers
	// (not messages) move the mark like any bytes.
	b := c.buf()
	b.B = append(b.B, make([]byte, size)...)
	c.addMessage()
	check("one in frames", 1, false)
	c.flush()
	check("written", 1, true)
	sc.take(size)
	check("taken", 0, false)

	c.release()
	if len(lp.backlogs) != 0 || lp.stats.pending.Load() != 0 {
		t.Fatalf("after release: %d marks, loop pending %d; want none", len(lp.backlogs), lp.stats.pending.Load())
	}
}

// TestOutboxBacklogNoAllocs: the mark costs no allocation on the frame path: a connection
// that gets a backlog, keeps it while messages pass, and loses it again (its mark put in
// and taken out of the loop's map) allocates nothing once the loop has warmed up.
func TestOutboxBacklogNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race; allocation counts run in `make test`")
	}
	_, loops := newTestLoops(t, 1)
	lp := loops[0]
	var conns []*conn
	var socks []*socketConn
	for i := range 64 {
		c, _ := addConn(t, lp, "r"+string(rune('a'+i%26)))
		sc := &socketConn{fakeConn: fakeConn{c: c}}
		c.gc = sc
		conns, socks = append(conns, c), append(socks, sc)
	}
	round := func() {
		for i, c := range conns {
			queueMsgs(c, 4, 64) // a backlog: the mark goes into the map
			socks[i].take(2 * 64)
			queueMsgs(c, 1, 64)
			_ = c.full()
			socks[i].take(socks[i].buffered) // taken: the mark comes out
			c.sync()
		}
	}
	for range 100 {
		round()
	}
	if n := testing.AllocsPerRun(100, round); n != 0 {
		t.Fatalf("%v allocations per round of 64 connections gaining and losing a backlog; want 0", n)
	}
	if len(lp.backlogs) != 0 {
		t.Fatalf("%d marks left; want none", len(lp.backlogs))
	}
}

// TestBacklogsTrimmed: the loop's map of marks, grown by a wave of backlogged
// connections, is made anew once the wave has passed (an emptied Go map keeps its
// memory); a small one is kept.
func TestBacklogsTrimmed(t *testing.T) {
	_, loops := newTestLoops(t, 1)
	lp := loops[0]
	wave := func(n int) {
		var socks []*socketConn
		var conns []*conn
		for i := range n {
			c, _ := addConn(t, lp, "w"+strconv.Itoa(i))
			sc := &socketConn{fakeConn: fakeConn{c: c}}
			c.gc = sc
			queueMsgs(c, 1, 16)
			conns, socks = append(conns, c), append(socks, sc)
		}
		if len(lp.backlogs) != n || lp.backlogPeak != n {
			t.Fatalf("%d marks, peak %d; want %d", len(lp.backlogs), lp.backlogPeak, n)
		}
		for i, c := range conns {
			socks[i].take(socks[i].buffered)
			c.sync()
			c.release()
			lp.conns.Remove(c.id)
		}
	}
	wave(backlogsKeep)
	before := reflect.ValueOf(lp.backlogs).UnsafePointer()
	lp.trimBacklogs()
	if reflect.ValueOf(lp.backlogs).UnsafePointer() != before {
		t.Fatal("a map that never held more than backlogsKeep marks was made anew")
	}
	wave(backlogsKeep + 1)
	before = reflect.ValueOf(lp.backlogs).UnsafePointer()
	lp.trimBacklogs()
	if reflect.ValueOf(lp.backlogs).UnsafePointer() == before || lp.backlogPeak != 0 || len(lp.backlogs) != 0 {
		t.Fatalf("after a wave of %d: the map kept (peak %d, %d marks); want a new empty one", backlogsKeep+1, lp.backlogPeak, len(lp.backlogs))
	}
}
