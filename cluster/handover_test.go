package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/switchboard/switchboard/shard"
)

// TestHandover: a name whose connection closed on a live node is the next claimant's at
// once, on any node, even before that node's KV delete lands (release queries, probe.go).
// Before, the claim found the entry held by a live node and answered NAME_TAKEN: 322–844 of a
// draining node's 1,000 clients lost their names, re-registering on the other nodes
// (docs/BENCHMARKS.md, "A planned drain in a cluster"). A name still held is not handed
// over (NAME_TAKEN), nor is one held on a draining node (UNAVAILABLE: ask again), and the
// let-go node's late delete does not remove the new owner's entry.
func TestHandover(t *testing.T) {
	tc := startCluster(t)
	a, b, c := tc.node(0).Directory(), tc.node(1).Directory(), tc.node(2).Directory()
	a1, b1 := conn(1, 7), conn(2, 9)

	if err := claim(t, a, "moving", a1); err != nil {
		t.Fatalf("claim on node 1: %v", err)
	}
	waitFor(t, "node 2 to see node 1's owner", 10*time.Second, func() bool { return lookup(b, "moving") == a1 })

	// Still held on node 1: a claim on node 2 is refused, and asks node 1 to be sure.
	if err := claim(t, b, "moving", b1); !errors.Is(err, shard.ErrNameTaken) {
		t.Fatalf("claim on node 2 of a name node 1 holds = %v; want NAME_TAKEN", err)
	}

	// Let go on node 1 with its delete held back: the claim on node 2 gets it.
	a.holdDeletes.Store(true)
	if err := a.Unregister("moving", a1); err != nil {
		t.Fatalf("unregister on node 1: %v", err)
	}
	before := b.handovers.Load()
	if err := claim(t, b, "moving", b1); err != nil {
		t.Fatalf("claim on node 2 of a name node 1 let go, its delete not landed = %v; want OK", err)
	}
	if got := b.handovers.Load() - before; got != 1 {
		t.Errorf("node 2 handovers = %d; want 1", got)
	}
	// Node 1's delete, a CAS on the old revision, fails now: the name stays node 2's.
	tried := a.deletesTried.Load()
	a.holdDeletes.Store(false)
	a.uwake <- struct{}{}
	waitFor(t, "node 1's delete to be tried", 10*time.Second, func() bool { return a.deletesTried.Load() > tried })
	for _, d := range []*Directory{a, b, c} {
		waitFor(t, "every node to see node 2's owner", 10*time.Second, func() bool { return lookup(d, "moving") == b1 })
	}
	for i, d := range []*Directory{a, b, c} {
		if got := lookup(d, "moving"); got != b1 {
			t.Errorf("node %d's lookup after node 1's delete ran = %v; want %v", i+1, got, b1)
		}
	}

	// The same when the claiming node's cache does not show the entry (its watch is
	// behind): the claim finds it by a leader read and asks the owner's node then. A
	// handover, not a takeover: the owner's node is alive.
	if err := claim(t, a, "moving2", a1); err != nil {
		t.Fatalf("claim on node 1: %v", err)
	}
	waitFor(t, "node 2 to see node 1's owner", 10*time.Second, func() bool { return lookup(b, "moving2") == a1 })
	a.holdDeletes.Store(true)
	if err := a.Unregister("moving2", a1); err != nil {
		t.Fatalf("unregister on node 1: %v", err)
	}
	e, _ := b.cache.get("moving2")
	b.cache.remove("moving2", e.rev)
	hand, took := b.handovers.Load(), b.takeovers.Load()
	if err := b.tryClaim("moving2", b1); err != nil {
		t.Fatalf("claim on node 2, its cache without the entry = %v; want OK", err)
	}
	if h, k := b.handovers.Load()-hand, b.takeovers.Load()-took; h != 1 || k != 0 {
		t.Errorf("node 2 handovers +%d, takeovers +%d; want +1, +0", h, k)
	}
	a.holdDeletes.Store(false)
	a.uwake <- struct{}{}

	// Held on a draining node: UNAVAILABLE (the client asks again), not NAME_TAKEN.
	b2 := conn(2, 11)
	if err := claim(t, a, "leaving", a1); err != nil {
		t.Fatalf("claim on node 1: %v", err)
	}
	tc.node(0).ReportStatus(func() Status { return Status{Draining: true} })
	waitFor(t, "node 2 to see node 1 draining", 10*time.Second, func() bool {
		l, ok := b.member(1)
		return ok && l.draining
	})
	if err := claim(t, b, "leaving", b2); !errors.Is(err, errOwnerDraining) {
		t.Fatalf("claim on node 2 of a name a draining node holds = %v; want %v", err, errOwnerDraining)
	}
	if err := a.Unregister("leaving", a1); err != nil {
		t.Fatalf("unregister on node 1: %v", err)
	}
	if err := claim(t, b, "leaving", b2); err != nil {
		t.Fatalf("claim on node 2 once the draining node let go = %v; want OK", err)
	}
}
