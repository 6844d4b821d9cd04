package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/server"
	"github.com/switchboard/switchboard/shard"
)

// xnode is one node of a forwarding test: a real server wired to a cluster node, as
// switchboard serve wires them.
type xnode struct {
	srv *server.Server
	cn  *Node
}

// startServers starts one server per node of tc, each with the node's directory and
// forwarder, and shuts them down when the test ends (before the cluster stops).
func startServers(t testing.TB, tc *testCluster) []xnode {
	t.Helper()
	var xs []xnode
	for i := range 3 {
		cn := tc.node(i)
		cfg := server.DefaultConfig()
		cfg.Listen = "127.0.0.1:0"
		cfg.NodeID = uint16(i + 1)
		cfg.Loops = 2
		cfg.LoopLagBudget = time.Hour    // a loaded machine's lag must not shed test frames
		cfg.RequestTimeout = time.Second // also the bound of a SEND+ACK to another node
		srv, err := server.New(cfg, server.WithLogger(slog.New(slog.DiscardHandler)),
			server.WithDirectory(cn.Directory()), server.WithRemote(cn.Forwarder()))
		if err != nil {
			t.Fatal(err)
		}
		cn.Forwarder().SetHandler(func(rec []byte) { srv.DeliverRemote(rec) })
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { shutdownServer(t, srv) })
		xs = append(xs, xnode{srv: srv, cn: cn})
	}
	return xs
}

func shutdownServer(t testing.TB, srv *server.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// peer connects a raw client named name to x's server.
func (x xnode) peer(t testing.TB, name string) *rawpeer.Peer {
	p := rawpeer.Dial(t, x.srv.Addr().String())
	p.Hello(name, "")
	return p
}

// register registers name for p and waits until every node's directory finds it.
func register(t testing.TB, xs []xnode, p *rawpeer.Peer, name string, corr uint32) {
	t.Helper()
	p.Write(codec.AppendName(nil, codec.TypeRegister, corr, name))
	expect(t, p, codec.TypeOK, corr, 0)
	waitFor(t, name+" in every node's directory", 10*time.Second, func() bool {
		for _, x := range xs {
			if lookup(x.cn.Directory(), name) != shard.ConnID(p.ConnID) {
				return false
			}
		}
		return true
	})
}

// expect reads the next frame of p and fails unless it has type typ, corr and (for an
// ERROR) code.
func expect(t testing.TB, p *rawpeer.Peer, typ codec.Type, corr uint32, code codec.ErrorCode) codec.Frame {
	t.Helper()
	f, err := p.Read()
	if err != nil {
		t.Fatalf("reading %v corr %d: %v", typ, corr, err)
	}
	var got codec.ErrorCode
	reason := ""
	if f.Type == codec.TypeError {
		e, err := codec.ParseError(f.Body)
		if err != nil {
			t.Fatalf("bad ERROR: %v", err)
		}
		got, reason = e.Code, e.Reason
	}
	if f.Type != typ || f.Corr != corr || got != code {
		t.Fatalf("got %v corr %d code %v (%q); want %v corr %d code %v", f.Type, f.Corr, got, reason, typ, corr, code)
	}
	return f
}

// barrier sends PING corr and fails unless PONG is the next frame: nothing else was
// waiting for p.
func barrier(t *testing.T, p *rawpeer.Peer, corr uint32) {
	t.Helper()
	p.Write(codec.AppendFrame(nil, codec.TypePing, 0, corr, nil))
	expect(t, p, codec.TypePong, corr, 0)
}

// messages reads n MESSAGEs from p and returns their payloads.
func messages(t *testing.T, p *rawpeer.Peer, n int) []string {
	t.Helper()
	var got []string
	for range n {
		f := expect(t, p, codec.TypeMessage, 0, 0)
		_, from, payload, err := codec.ParseMessage(f.Body)
		if err != nil {
			t.Fatal(err)
		}
		if string(from) != "sender" {
			t.Fatalf("MESSAGE from %q; want sender", from)
		}
		got = append(got, string(payload))
	}
	return got
}

// TestForward runs cross-node traffic through three servers, each wired to a node of an
// embedded three-node cluster: names registered on one node are reached from the others
// by SEND, SEND+ACK and REQUEST, a REPLY counts only from the connection the INCOMING
// went to, a full forward queue answers QUEUE_FULL, and a requester whose responder's
// node dies gets exactly one TIMEOUT.
func TestForward(t *testing.T) {
	tc := startCluster(t)
	xs := startServers(t, tc)
	a, b, c := xs[0], xs[1], xs[2]

	sender := a.peer(t, "sender")
	bob := b.peer(t, "bob")
	register(t, xs, bob, "bob", 1)

	t.Run("send", func(t *testing.T) {
		// Without ACK: nothing comes back to the sender on success; the receiver gets
		// every message, in order.
		const n = 20
		for i := range n {
			sender.Write(codec.AppendSend(nil, 0, 0, "bob", fmt.Appendf(nil, "m%d", i)))
		}
		got := messages(t, bob, n)
		for i, m := range got {
			if m != fmt.Sprintf("m%d", i) {
				t.Fatalf("message %d = %q; want m%d (order across nodes is kept)", i, m, i)
			}
		}
		barrier(t, sender, 2)
		barrier(t, bob, 3)
		// The server's /metrics carries the forwarder's counters.
		var out strings.Builder
		a.srv.WritePrometheus(&out)
		for _, want := range []string{"# TYPE switchboard_cluster_forwarded_total counter\n", "\nswitchboard_cluster_forward_queued 0\n"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
		if st := a.cn.Forwarder().Stats(); st.Published < n || st.Batches == 0 {
			t.Errorf("A's forwarder published %d records in %d batches; want at least %d in at least 1", st.Published, st.Batches, n)
		}
	})

	t.Run("send with ack", func(t *testing.T) {
		// The OK comes from bob's node: told OK = messages bob got.
		const n = 20
		for i := range n {
			sender.Write(codec.AppendSend(nil, codec.FlagAck, uint32(100+i), "bob", fmt.Appendf(nil, "a%d", i)))
		}
		for i := range n {
			expect(t, sender, codec.TypeOK, uint32(100+i), 0)
		}
		got := messages(t, bob, n)
		expectFrom(t, got, "a", n)
		barrier(t, sender, 4)
		barrier(t, bob, 5)
		// To a name nobody owns: NO_ROUTE at once, from the sender's own directory.
		sender.Write(codec.AppendSend(nil, codec.FlagAck, 150, "nobody", []byte("x")))
		expect(t, sender, codec.TypeError, 150, codec.CodeNoRoute)
	})

	t.Run("send with ack to a connection gone", func(t *testing.T) {
		// bob2 registers on B and leaves; until A's directory hears of it, A forwards, and
		// B answers NO_ROUTE.
		bob2 := b.peer(t, "bob2")
		register(t, xs, bob2, "bob2", 1)
		target := shard.ConnID(bob2.ConnID)
		_ = bob2.Conn.Close()
		waitFor(t, "bob2 closed on B", 10*time.Second, func() bool { return lookup(b.cn.Directory(), "bob2") != target })
		// A still has the old entry for a moment, or not: either way, exactly one
		// outcome, NO_ROUTE.
		sender.Write(codec.AppendSend(nil, codec.FlagAck, 160, "bob2", []byte("x")))
		expect(t, sender, codec.TypeError, 160, codec.CodeNoRoute)
	})

	t.Run("request and reply", func(t *testing.T) {
		svc := c.peer(t, "svc")
		register(t, xs, svc, "svc", 1)
		forger := b.peer(t, "forger")

		sender.Write(codec.AppendRequest(nil, 200, "svc", 5000, []byte("ping")))
		f := expect(t, svc, codec.TypeIncoming, 0, 0)
		token, fromConn, from, payload, err := codec.ParseIncoming(f.Body)
		if err != nil {
			t.Fatal(err)
		}
		if shard.ConnID(fromConn) != shard.ConnID(sender.ConnID) || string(from) != "sender" || string(payload) != "ping" {
			t.Fatalf("INCOMING from %v %q payload %q; want %v \"sender\" \"ping\"", shard.ConnID(fromConn), from, payload, shard.ConnID(sender.ConnID))
		}
		// A REPLY with the token from another connection (on a third node) is refused as
		// if the token were unknown, and the request waits on for its responder.
		forger.Write(codec.AppendReply(nil, 201, token, []byte("forged")))
		expect(t, forger, codec.TypeError, 201, codec.CodeNoRoute)
		svc.Write(codec.AppendReply(nil, 0, token, []byte("pong")))
		r := expect(t, sender, codec.TypeResponse, 200, 0)
		if string(r.Body) != "pong" {
			t.Fatalf("RESPONSE %q; want pong", r.Body)
		}
		// A second REPLY: the request has had its outcome.
		svc.Write(codec.AppendReply(nil, 202, token, []byte("again")))
		expect(t, svc, codec.TypeError, 202, codec.CodeNoRoute)
		barrier(t, sender, 6)
		_ = svc.Conn.Close()
	})

	t.Run("forward queue full", func(t *testing.T) {
		// A's forwarder holds its batches; its queue towards B takes 4 records. Of 6
		// SENDs, the last 2 get QUEUE_FULL; of 3 SEND+ACKs after them (the queue still
		// full), all 3; once released, the 4 queued arrive and nothing else.
		fw := a.cn.Forwarder()
		fw.hold(true)
		old := fw.maxQueue.Swap(4)
		for i := range 6 {
			sender.Write(codec.AppendSend(nil, 0, uint32(300+i), "bob", fmt.Appendf(nil, "q%d", i)))
		}
		expect(t, sender, codec.TypeError, 304, codec.CodeQueueFull)
		expect(t, sender, codec.TypeError, 305, codec.CodeQueueFull)
		for i := range 3 {
			sender.Write(codec.AppendSend(nil, codec.FlagAck, uint32(310+i), "bob", []byte("qa")))
			expect(t, sender, codec.TypeError, uint32(310+i), codec.CodeQueueFull)
		}
		fw.maxQueue.Store(old)
		fw.hold(false)
		got := messages(t, bob, 4)
		expectFrom(t, got, "q", 4)
		// And a SEND+ACK after the release goes through.
		sender.Write(codec.AppendSend(nil, codec.FlagAck, 320, "bob", []byte("after")))
		expect(t, sender, codec.TypeOK, 320, 0)
		if got := messages(t, bob, 1); got[0] != "after" {
			t.Fatalf("message %q; want after", got[0])
		}
		barrier(t, bob, 7)
		if st := fw.Stats(); st.QueueFull < 5 {
			t.Errorf("forwarder counted %d refusals; want at least 5", st.QueueFull)
		}
	})

	t.Run("ack outcome lost", func(t *testing.T) {
		// B delivers but its answer does not come back in time (B's forwarder holds it):
		// the sender gets TIMEOUT ("delivery unknown") at the bound, and the late OK
		// that follows is not a second outcome. bob did get the message.
		fw := b.cn.Forwarder()
		fw.hold(true)
		start := time.Now()
		sender.Write(codec.AppendSend(nil, codec.FlagAck, 350, "bob", []byte("late")))
		if got := messages(t, bob, 1); got[0] != "late" {
			t.Fatalf("message %q; want late", got[0])
		}
		expect(t, sender, codec.TypeError, 350, codec.CodeTimeout)
		if took := time.Since(start); took < time.Second {
			t.Errorf("TIMEOUT after %v; want no earlier than request-timeout (1s)", took)
		}
		received := a.cn.Forwarder().Stats().Received
		fw.hold(false)
		waitFor(t, "B's held outcome to reach A", 10*time.Second, func() bool {
			return fw.queued() == 0 && a.cn.Forwarder().Stats().Received > received
		})
		barrier(t, sender, 351)
	})

	t.Run("responder's node dies", func(t *testing.T) {
		slow := c.peer(t, "slow")
		register(t, xs, slow, "slow", 1)
		start := time.Now()
		sender.Write(codec.AppendRequest(nil, 400, "slow", 1500, []byte("hello?")))
		expect(t, slow, codec.TypeIncoming, 0, 0)
		// C crashes with the request in its responder's hands: its server stops and its
		// cluster node is killed (no lease released). A's timer answers, once.
		shutdownServer(t, c.srv)
		tc.kill(2)
		expect(t, sender, codec.TypeError, 400, codec.CodeTimeout)
		if took := time.Since(start); took < 1500*time.Millisecond {
			t.Errorf("TIMEOUT after %v; want no earlier than the request's 1.5 s", took)
		}
		barrier(t, sender, 8)
		// A SEND+ACK to the dead node's name: exactly one outcome, TIMEOUT (the lease
		// still looks live) or NO_ROUTE (expired, or the entry gone), within the bound.
		sender.Write(codec.AppendSend(nil, codec.FlagAck, 410, "slow", []byte("x")))
		f, err := sender.ReadTimeout(server.DefaultRequestTimeout + 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := codec.ParseError(f.Body)
		if f.Type != codec.TypeError || f.Corr != 410 || e.Code != codec.CodeTimeout && e.Code != codec.CodeNoRoute {
			t.Fatalf("got %v corr %d code %v; want ERROR corr 410 TIMEOUT or NO_ROUTE", f.Type, f.Corr, e.Code)
		}
		barrier(t, sender, 9)
	})
}

// expectFrom fails unless got is prefix0..prefix(n-1) in order.
func expectFrom(t *testing.T, got []string, prefix string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d messages; want %d", len(got), n)
	}
	for i, m := range got {
		if m != fmt.Sprintf("%s%d", prefix, i) {
			t.Fatalf("message %d = %q; want %s%d", i, m, prefix, i)
		}
	}
}
