package server

import (
	"context"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/shard"
)

// TestCloseWaitsForLanding: a message admitted at a connection's gate (and so
// acknowledged to its sender, on another loop or node) before the connection's GOODBYE
// or a drain's close is read still reaches it: the connection closes once the message
// has landed, with the MESSAGE before the EOF. Closed at once, it was dropped: 1–4
// acknowledged messages lost in 10 of 18 drains of a cluster node at 5,000 msgs/s
// (docs/BENCHMARKS.md, "A planned drain in a cluster"). The admission is made by hand,
// as DeliverRemote makes it, and the delivery pushed only once the close has been read,
// so that the message is on its way at the close in every run.
func TestCloseWaitsForLanding(t *testing.T) {
	for _, how := range []string{"goodbye", "drain"} {
		t.Run(how, func(t *testing.T) {
			s := startServer(t, Config{Loops: 1})
			lp := s.loopAt(0)
			onLoop := func(fn func()) {
				done := make(chan struct{})
				if err := lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error { fn(); close(done); return nil })); err != nil {
					t.Fatal(err)
				}
				<-done
			}
			p := rawpeer.Dial(t, s.Addr().String())
			id := shard.ConnID(p.Hello("x", "").ConnID)
			if code := lp.gates.admit(id); code != 0 {
				t.Fatalf("admit = %v", code)
			}
			switch how {
			case "goodbye":
				p.Write(codec.AppendFrame(nil, codec.TypeGoodbye, 0, 0, nil))
			case "drain": // a batch of the drain's, after its GOAWAY
				onLoop(func() { lp.closeSome(1) })
			}
			// Until the close has been read: then the admitted message is on its way.
			deadline := time.Now().Add(10 * time.Second)
			for {
				var st connState
				onLoop(func() {
					if c, ok := lp.conns.Get(id); ok {
						st = c.state
					} else {
						st = stateClosed
					}
				})
				if st != stateActive {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the close was not read within 10 s")
				}
				time.Sleep(5 * time.Millisecond)
			}
			msg := msgPool.Get()
			msg.B = codec.AppendMessage(msg.B[:0], 42, "sender", []byte("acknowledged"))
			if !lp.push(delivery{kind: dMessage, target: id, buf: msg}) {
				t.Fatal("push refused")
			}
			f, err := p.ReadTimeout(10 * time.Second)
			if err != nil {
				t.Fatalf("read: %v; want the acknowledged MESSAGE before the close", err)
			}
			from, _, payload, err := codec.ParseMessage(f.Body)
			if f.Type != codec.TypeMessage || err != nil || from != 42 || string(payload) != "acknowledged" {
				t.Fatalf("got %v (%v); want the acknowledged MESSAGE", f.Type, err)
			}
			p.ExpectClosed()
			if n := lp.stats.dropped.Load(); n != 0 {
				t.Errorf("dropped = %d; want 0", n)
			}
		})
	}
}
