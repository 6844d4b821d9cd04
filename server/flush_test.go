package server

import (
	"context"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
)

// taskLoop is the part of gnet.EventLoop the loops use (Execute), queueing the tasks so
// that a test runs them when gnet would: after the round's I/O events.
type taskLoop struct {
	gnet.EventLoop
	tasks []gnet.Runnable
}

func (l *taskLoop) Execute(_ context.Context, r gnet.Runnable) error {
	l.tasks = append(l.tasks, r)
	return nil
}

// run runs the queued tasks, those they queue included, as gnet's task batch does.
func (l *taskLoop) run() int {
	n := 0
	for len(l.tasks) > 0 {
		r := l.tasks[0]
		l.tasks = l.tasks[1:]
		_ = r.Run(context.Background())
		n++
	}
	return n
}

// trafficConn is a fakeConn with input: OnTraffic reads in from it.
type trafficConn struct {
	fakeConn
	c      *conn
	in     []byte
	writes int
}

func (f *trafficConn) Context() any         { return f.c }
func (f *trafficConn) InboundBuffered() int { return len(f.in) }
func (f *trafficConn) Peek(n int) ([]byte, error) {
	if n > 0 && n <= len(f.in) {
		return f.in[:n], nil
	}
	return f.in, nil
}
func (f *trafficConn) Discard(n int) (int, error)  { f.in = f.in[n:]; return n, nil }
func (f *trafficConn) Write(p []byte) (int, error) { f.writes++; return f.fakeConn.Write(p) }

// TestOneWritePerRound: in a poll round where two connections each send to the other,
// to themselves and to a connection of another loop, every connection gets one write
// (its OKs and the messages for it together), and the other loop is woken once per
// callback, its deliveries written with one write too.
func TestOneWritePerRound(t *testing.T) {
	s, loops := newTestLoops(t, 2)
	els := []*taskLoop{{}, {}}
	var tcs []*trafficConn
	for _, name := range []string{"a", "b", "x"} {
		lp := loops[0]
		if name == "x" {
			lp = loops[1]
		}
		c, _ := addConn(t, lp, name)
		tc := &trafficConn{c: c}
		c.gc = tc
		mustRegister(t, s, name, c)
		tcs = append(tcs, tc)
	}
	for i, lp := range loops {
		lp.el = els[i]
	}
	var in []byte
	for i := range 16 {
		for _, to := range []string{"a", "b", "x"} {
			in = codec.AppendSend(in, codec.FlagAck, uint32(i+1), to, []byte("12345678"))
		}
	}
	h := &handler{srv: s}
	for _, tc := range tcs[:2] {
		tc.in = append([]byte(nil), in...)
		h.OnTraffic(tc)
		if tc.writes != 0 {
			t.Errorf("%s written during its callback in a round that routes; want at the round's end", tc.c.name())
		}
	}
	if got := len(els[1].tasks); got != 1 {
		t.Errorf("loop 1 woken %d times by two callbacks (armed after the first); want 1", got)
	}
	if got := els[0].run(); got != 1 {
		t.Errorf("loop 0 ran %d tasks at the round's end; want 1 flush", got)
	}
	for _, tc := range tcs[:2] {
		if tc.writes != 1 {
			t.Errorf("%s: %d writes in the round; want 1", tc.c.name(), tc.writes)
		}
	}
	els[1].run()
	want := 32 * len(codec.AppendMessage(nil, 0, []byte("a"), []byte("12345678")))
	if x := tcs[2]; x.writes != 1 || x.written != want {
		t.Errorf("x: %d writes of %d bytes; want 1 of %d", x.writes, x.written, want)
	}
	// An echo-only callback writes at once and queues nothing.
	a := tcs[0]
	a.in = codec.AppendFrame(nil, codec.TypeEcho, 0, 1, []byte("e"))
	a.writes = 0
	h.OnTraffic(a)
	if a.writes != 1 || len(els[0].tasks) != 0 {
		t.Errorf("echo: %d writes, %d tasks queued; want 1, 0", a.writes, len(els[0].tasks))
	}
}
