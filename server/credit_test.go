package server

import (
	"fmt"
	"testing"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// sendsTo is n SEND+ACKs to name, corrs first..first+n-1, payload "m<corr>".
func sendsTo(name string, first, n int) []byte {
	var b []byte
	for i := first; i < first+n; i++ {
		b = codec.AppendSend(b, codec.FlagAck, uint32(i), name, fmt.Appendf(nil, "m%d", i))
	}
	return b
}

// expectOKs reads the OKs for corrs first..last, in order.
func expectOKs(t *testing.T, p *rawpeer.Peer, first, last int) {
	t.Helper()
	for i := first; i <= last; i++ {
		if f := p.Expect(codec.TypeOK); f.Corr != uint32(i) {
			t.Fatalf("OK corr %d; want %d", f.Corr, i)
		}
	}
}

// expectMessages reads the MESSAGEs "m<first>".."m<last>" from src, in order.
func expectMessages(t *testing.T, sink, src *rawpeer.Peer, first, last int) {
	t.Helper()
	for i := first; i <= last; i++ {
		expectMessage(t, sink, src, "src", fmt.Sprintf("m%d", i))
	}
}

// TestRouteCreditPausesSender: a sender whose messages wait in another loop's ring is
// read no further once route-credit of them are on their way: it is told OK for exactly
// those, the rest of its input waits (no QUEUE_FULL, nothing refused), and once the
// target loop lands them everything is answered and delivered, in order.
func TestRouteCreditPausesSender(t *testing.T) {
	const credit, total = 16, 200
	s := startServer(t, Config{RouteCredit: credit})
	sink := registeredOn(t, s, "sink", 1)
	src := connectOn(t, s, "src", 0)
	release := holdRing(t, s, 1) // loop 1 lands nothing: the messages wait in its ring
	src.Write(sendsTo("sink", 1, total))
	expectOKs(t, src, 1, credit) // the credit-th pauses src
	waitFor(t, "the pause", func() bool { return s.Stats().RouteCreditPauses == 1 })
	// Paused, src's loop reads none of its frames: the server admitted exactly credit.
	if st := s.Stats(); st.Sent != credit || st.QueueFull != 0 {
		t.Fatalf("while the ring is held: %d sent, %d QUEUE_FULL; want %d, 0", st.Sent, st.QueueFull, credit)
	}
	release()
	expectOKs(t, src, credit+1, total)
	expectMessages(t, sink, src, 1, total)
	pingBarrier(t, src, 9999)
	pingBarrier(t, sink, 9999)
	if st := s.Stats(); st.Sent != total || st.QueueFull != 0 || st.Dropped != 0 {
		t.Fatalf("after: %d sent, %d QUEUE_FULL, %d dropped; want %d, 0, 0", st.Sent, st.QueueFull, st.Dropped, total)
	}
}

// TestRouteCreditOverrun: a paused sender that keeps sending (it does not wait for
// answers) is read anyway once creditInputMax bytes of its input wait, so that gnet's
// inbound buffer stays bounded; it loses nothing either way.
func TestRouteCreditOverrun(t *testing.T) {
	const credit = 16
	s := startServer(t, Config{RouteCredit: credit})
	sink := registeredOn(t, s, "sink", 1)
	src := connectOn(t, s, "src", 0)
	release := holdRing(t, s, 1)
	src.Write(sendsTo("sink", 1, credit))
	expectOKs(t, src, 1, credit)
	waitFor(t, "the pause", func() bool { return s.Stats().RouteCreditPauses == 1 })
	// More than creditInputMax of SENDs, ~4 KiB each: fewer than the ring holds.
	payload := make([]byte, 4<<10)
	n := creditInputMax/len(payload) + 8
	var more []byte
	for i := credit + 1; i <= credit+n; i++ {
		more = codec.AppendSend(more, codec.FlagAck, uint32(i), "sink", payload)
	}
	src.Write(more)
	waitFor(t, "the overrun", func() bool { return s.Stats().RouteCreditOverruns >= 1 })
	waitFor(t, "more admitted", func() bool { return s.Stats().Sent > credit })
	release()
	expectOKs(t, src, credit+1, credit+n)
	expectMessages(t, sink, src, 1, credit)
	for range n {
		sink.Expect(codec.TypeMessage)
	}
	pingBarrier(t, sink, 9999)
	if st := s.Stats(); st.Sent != uint64(credit+n) || st.Dropped != 0 {
		t.Fatalf("%d sent, %d dropped; want %d, 0", st.Sent, st.Dropped, credit+n)
	}
}

// TestRouteCreditWord walks one sender's credit word through a pause and its resume, a
// resume lost to a full ring, a push that failed and a sender that left, on loops
// without an engine.
func TestRouteCreditWord(t *testing.T) {
	s, loops, a, _, _ := hotPathFixture(t)
	s.cfg.RouteCredit = 4
	send := codec.AppendSend(nil, 0, 0, "x", []byte("p"))
	dispatch := func(n int) {
		for range n {
			f, _, _ := codec.Decode(send, codec.DefaultMaxFrame)
			loops[0].dispatch(a, f, 0)
		}
	}
	word := func() (onTheWay uint64, paused bool) {
		v := loops[0].gates.creditWord(a.id).Load()
		return v & gateCountMask, v&creditPaused != 0
	}
	check := func(step string, wantN uint64, wantPaused bool) {
		t.Helper()
		n, p := word()
		if n != wantN || p != wantPaused || (a.flags&flagPaused != 0) != wantPaused {
			t.Fatalf("%s: %d on the way, paused bit %v, flag %v; want %d, %v", step, n, p, a.flags&flagPaused != 0, wantN, wantPaused)
		}
	}

	dispatch(3)
	check("3 sent", 3, false)
	dispatch(1)
	check("4 sent", 4, true)
	loops[1].drainRing(1)
	check("1 landed", 3, true)
	loops[1].drainRing(1) // 2 left = half: the lander clears the bit and sends a resume
	if n, p := word(); n != 2 || p {
		t.Fatalf("2 landed: %d on the way, paused bit %v; want 2, cleared", n, p)
	}
	if a.flags&flagPaused == 0 {
		t.Fatal("2 landed: a resumed before its loop ran the resume")
	}
	loops[0].drainRing(loops[0].inbox.Cap())
	check("resumed", 2, false)
	loops[1].drainRing(2)
	check("all landed", 0, false)

	// A resume that comes after its connection was read again and spent its credit again
	// (mayRead found the bit cleared before the resume arrived) is stale: the connection
	// stays paused until a refund clears the bit again. (It used to unpause it with the
	// bit set: nothing paused it again, and it pushed without bound.)
	dispatch(4)
	check("paused for the stale resume", 4, true)
	loops[1].drainRing(2) // the bit cleared, a resume on its way to loop 0
	if !loops[0].mayRead(a) {
		t.Fatal("mayRead refused a connection whose bit was cleared")
	}
	dispatch(2)
	check("spent again before the resume arrived", 4, true)
	loops[0].drainRing(loops[0].inbox.Cap()) // the stale resume
	check("the stale resume ignored", 4, true)
	dispatch(1) // as if read past the pause: it is paused again at once
	check("read past the pause", 5, true)
	loops[1].drainRing(3)
	loops[0].drainRing(loops[0].inbox.Cap())
	check("resumed by the refund that cleared the bit", 2, false)
	loops[1].drainRing(2)
	check("all landed (stale resume)", 0, false)

	// A resume lost to a full ring: the owner's tick finds the bit cleared.
	dispatch(4)
	check("paused again", 4, true)
	for loops[0].inbox.Push(delivery{kind: dOutcome}) {
	}
	loops[1].drainRing(2) // 2 left: the bit cleared, the resume finds loop 0's ring full
	if got := loops[1].stats.creditResumesLost.Load(); got != 1 {
		t.Fatalf("%d resumes lost; want 1", got)
	}
	if n, p := word(); n != 2 || p || a.flags&flagPaused == 0 {
		t.Fatalf("resume lost: %d on the way, paused bit %v, flag %v; want 2, cleared, set", n, p, a.flags&flagPaused != 0)
	}
	loops[0].resumeLost()
	if a.flags&flagPaused != 0 {
		t.Fatal("resumeLost left a paused")
	}
	for {
		if _, ok := loops[0].inbox.Pop(); !ok {
			break
		}
	}
	loops[1].drainRing(2)
	check("all landed again", 0, false)

	// A push that fails (the target ring full) takes its count back.
	for loops[1].inbox.Push(delivery{kind: dOutcome}) {
	}
	dispatch(1)
	check("push failed", 0, false)
	for {
		if _, ok := loops[1].inbox.Pop(); !ok {
			break
		}
	}

	// A sender that left: its slot's next connection starts with its own word, and
	// refunds of the old one's messages do not touch it.
	dispatch(2)
	old := a.id
	loops[0].gates.shut(old, gateGone)
	loops[0].conns.Remove(old)
	a2, _ := addConn(t, loops[0], "a2")
	if a2.id.Slot() != old.Slot() {
		t.Skipf("the table gave the new connection slot %d, not %d", a2.id.Slot(), old.Slot())
	}
	loops[1].drainRing(2)
	if v := loops[0].gates.creditWord(a2.id).Load(); v&gateCountMask != 0 || v&creditPaused != 0 {
		t.Fatalf("the old sender's refunds reached the new one's word: %#x", v)
	}
}
