package server

import (
	"context"
	"net/netip"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/shard"
)

// TestGnetLayout checks that the per-connection addresses gnet keeps are found and
// cleared (gnetaddr.go). It fails when a gnet upgrade moves them: look at what gnet's
// connection object keeps then, and update gnetLayoutOf.
func TestGnetLayout(t *testing.T) {
	s := startServer(t, Config{})
	if !s.gnetConn.ok {
		t.Fatalf("gnet connection layout not recognised in %v", s.gnetConn.typ)
	}
	p := connect(t, s, "alice")
	id := shard.ConnID(p.ConnID)
	lp := s.loopAt(id.Loop())
	type seen struct {
		local, remote, safe bool
		ip                  netip.Addr
	}
	got := make(chan seen, 1)
	err := lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		c, ok := lp.conns.Get(id)
		if !ok {
			got <- seen{}
			return nil
		}
		got <- seen{c.gc.LocalAddr() != nil, c.gc.RemoteAddr() != nil, c.gc.SafeContext() != nil, c.ip.Addr()}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	g := <-got
	if g.local || g.remote || g.safe {
		t.Errorf("gnet still holds LocalAddr %v, RemoteAddr %v, SafeContext %v; want none", g.local, g.remote, g.safe)
	}
	if want := netip.MustParseAddr("127.0.0.1"); g.ip != want {
		t.Errorf("conn.ip %v; want %v", g.ip, want)
	}
}
