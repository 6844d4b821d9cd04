package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/shard"
)

// TestLinksUp: every node links to every other, with its end of each link moved above
// linkFDFloor (on Linux), so that the kernel closes it before any client connection when
// the process dies. A clean stop ends its links without a loss.
func TestLinksUp(t *testing.T) {
	// A silent link below must not hold a stop up: with the ident's time far above the
	// stop's, a stop that waited for it would show.
	identTime := linkIdentTime
	linkIdentTime = time.Minute
	t.Cleanup(func() { linkIdentTime = identTime })
	tc := startCluster(t)
	ds := []*Directory{tc.node(0).Directory(), tc.node(1).Directory(), tc.node(2).Directory()}
	waitFor(t, "every node to link to the two others, and to be linked by them", 10*time.Second, func() bool {
		for _, d := range ds {
			d.lnmu.Lock()
			in := len(d.linksIn)
			d.lnmu.Unlock()
			if d.linksOut.Load() != 2 || in != 2 {
				return false
			}
		}
		return true
	})
	if runtime.GOOS != "linux" {
		return
	}
	floor := linkFDFloor()
	if floor == 0 {
		t.Skip("open-file limit too low for the links' descriptors to move")
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	high := 0
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= floor {
			high++
		}
	}
	if high != 6 { // three nodes in this process, two links each
		t.Errorf("%d descriptors at or above %d; want the 6 links' ends", high, floor)
	}
	for _, d := range ds {
		if n := d.linksLost.Load(); n != 0 {
			t.Errorf("node %d lost %d links in a cluster nobody left", d.cfg.NodeID, n)
		}
	}

	// A clean stop says goodbye on its links: the others see them end, and lose none. A
	// connection to its link listener that never sends an ident does not hold the stop up.
	silent, err := net.Dial("tcp", ds[2].linkAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitFor(t, "node 3 to accept the silent link", 5*time.Second, func() bool {
		ds[2].lnmu.Lock()
		defer ds[2].lnmu.Unlock()
		return len(ds[2].linksNew) == 1
	})
	tc.mu.Lock()
	n3 := tc.nodes[2]
	tc.nodes[2] = nil
	tc.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopping := time.Now()
	if err := n3.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(stopping); took >= linkIdentTime/2 {
		t.Errorf("node 3 took %v to stop with a silent link open; want it not to wait for the ident (%v)", took, linkIdentTime)
	}
	waitFor(t, "nodes 1 and 2 to drop node 3's links", 10*time.Second, func() bool {
		for _, d := range ds[:2] {
			d.lnmu.Lock()
			l := d.linksIn[3]
			d.lnmu.Unlock()
			if l != nil || d.linksOut.Load() != 1 {
				return false
			}
		}
		return true
	})
	for _, d := range ds[:2] {
		if n := d.linksLost.Load(); n != 0 {
			t.Errorf("node %d counted %d links lost when node 3 stopped cleanly", d.cfg.NodeID, n)
		}
	}
}

// dialLinkAs opens a link to d as node with epoch, presenting token (d's own when nil).
func dialLinkAs(t *testing.T, d *Directory, node uint16, epoch uint64, token []byte) net.Conn {
	t.Helper()
	m, err := d.nc.Request(d.linkSubject(d.cfg.NodeID), nil, 5*time.Second)
	if err != nil {
		t.Fatalf("link subject: %v", err)
	}
	if token == nil {
		token = m.Data[:8]
	}
	c, err := net.Dial("tcp", string(m.Data[8:]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(appendLinkIdent(nil, node, epoch, token)); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitForLinkIn waits until d holds node's link from run epoch.
func waitForLinkIn(t *testing.T, d *Directory, node uint16, epoch uint64) {
	t.Helper()
	waitFor(t, "node "+strconv.Itoa(int(d.cfg.NodeID))+" to hold node "+strconv.Itoa(int(node))+"'s link", 5*time.Second, func() bool {
		d.lnmu.Lock()
		defer d.lnmu.Unlock()
		l := d.linksIn[node]
		return l != nil && l.epoch == epoch
	})
}

// ghostNode writes a lease for node (epoch) and a name it owns into A's buckets, and
// subscribes its probe subject: answering with epoch when answer, else never (a node
// killed while the routes to it are still open).
func ghostNode(t *testing.T, ad *Directory, node uint16, epoch uint64, name string, answer bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ad.leases.Put(ctx, leaseKey(node), appendLease(nil, lease{epoch: epoch, addr: "127.0.0.1:1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := ad.names.Put(ctx, nameKey(name), appendOwner(nil, owner{id: conn(node, 5), epoch: epoch})); err != nil {
		t.Fatal(err)
	}
	sub, err := ad.nc.Subscribe(ad.probeSubject(node), func(m *nats.Msg) {
		if answer {
			_ = m.Respond(binary.BigEndian.AppendUint64(nil, epoch))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := ad.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to see the lease of node "+strconv.Itoa(int(node)), 5*time.Second, func() bool { _, ok := ad.member(node); return ok })
}

// TestLinkLostTakeover: a node whose routes are still open but whose process ended — its
// link closed, its probe unanswered — is taken for dead at once, and a claim of its name
// succeeds, where without the link the claim stays UNAVAILABLE until the lease expires
// (TestProbeUnansweredUndecided). A link presenting a wrong token changes nothing, and
// neither does a link closed with a goodbye; the lost link of a node that still answers
// its probe does not make it dead.
func TestLinkLostTakeover(t *testing.T) {
	tc := startClusterWith(t, func(c *Config) { c.LeaseTTL = probeLeaseTTL })
	ad := tc.node(0).Directory()
	const ghost, epoch = uint16(11), uint64(79)
	ghostNode(t, ad, ghost, epoch, "linked-ghost", false)
	if err := claim(t, ad, "linked-ghost", conn(1, 100)); !errors.Is(err, shard.ErrUnavailable) {
		t.Fatalf("claim of an unanswering node's name = %v; want UNAVAILABLE", err)
	}
	down := ad.nodesDown.Load()

	// A forged link: refused (closed by A), no loss recorded, still undecided.
	forged := dialLinkAs(t, ad, ghost, epoch, []byte("12345678"))
	_ = forged.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := forged.Read(make([]byte, 1)); err == nil {
		t.Fatal("a link with a wrong token was read from; want it closed")
	}
	_ = forged.Close()
	if n := ad.linksLost.Load(); n != 0 {
		t.Fatalf("a refused link counted as %d lost", n)
	}
	if err := claim(t, ad, "linked-ghost", conn(1, 101)); !errors.Is(err, shard.ErrUnavailable) {
		t.Fatalf("claim after a forged link = %v; want UNAVAILABLE", err)
	}

	// A link closed on purpose (the goodbye byte first, as linkOut.close sends): not a loss.
	link := dialLinkAs(t, ad, ghost, epoch, nil)
	waitForLinkIn(t, ad, ghost, epoch)
	if _, err := link.Write([]byte{linkBye}); err != nil {
		t.Fatal(err)
	}
	_ = link.Close()
	waitFor(t, "A to drop node 11's link", 5*time.Second, func() bool {
		ad.lnmu.Lock()
		defer ad.lnmu.Unlock()
		return ad.linksIn[ghost] == nil
	})
	if n := ad.linksLost.Load(); n != 0 {
		t.Fatalf("a link closed with a goodbye counted as %d lost", n)
	}
	if err := claim(t, ad, "linked-ghost", conn(1, 104)); !errors.Is(err, shard.ErrUnavailable) {
		t.Fatalf("claim after a link closed with a goodbye = %v; want UNAVAILABLE", err)
	}

	// The ghost's real link, then its process "ends": the link closes without a goodbye.
	link = dialLinkAs(t, ad, ghost, epoch, nil)
	waitForLinkIn(t, ad, ghost, epoch)
	_ = link.Close()
	waitFor(t, "A to take node 11 for dead", 5*time.Second, func() bool { _, ok := ad.nodeEpoch(ghost); return !ok })
	if n := ad.nodesDown.Load(); n != down+1 {
		t.Errorf("nodes taken for dead: %d more; want 1", n-down)
	}
	if err := claim(t, ad, "linked-ghost", conn(1, 102)); err != nil {
		t.Fatalf("claim of the ended node's name = %v; want it taken over", err)
	}
	if got := lookup(ad, "linked-ghost"); got != conn(1, 102) {
		t.Errorf("lookup = %v; want the claimant %v", got, conn(1, 102))
	}

	// A node that still answers its probe loses its link: alive, its name stays taken.
	const live, liveEpoch = uint16(12), uint64(80)
	ghostNode(t, ad, live, liveEpoch, "linked-live", true)
	lost := ad.linksLost.Load()
	link = dialLinkAs(t, ad, live, liveEpoch, nil)
	waitForLinkIn(t, ad, live, liveEpoch)
	_ = link.Close()
	waitFor(t, "A to see node 12's link lost", 5*time.Second, func() bool { return ad.linksLost.Load() == lost+1 })
	waitFor(t, "A to probe node 12 and find it alive", 5*time.Second, func() bool { return !ad.linkLostFor(live, liveEpoch) })
	if _, ok := ad.nodeEpoch(live); !ok {
		t.Fatal("A took node 12, which answers its probe, for dead")
	}
	if err := claim(t, ad, "linked-live", conn(1, 103)); !errors.Is(err, shard.ErrNameTaken) {
		t.Fatalf("claim of a live node's name after its link closed = %v; want NAME_TAKEN", err)
	}
}

// TestLinkIdentsBounded: anyone who reaches the link port can open connections that send
// no ident; at most linkIdentsMax of them wait (a goroutine and a descriptor each, for
// linkIdentTime), the rest are closed at once, and the nodes' own links still come up.
// It used to take a goroutine per connection, without a bound.
func TestLinkIdentsBounded(t *testing.T) {
	identTime := linkIdentTime
	linkIdentTime = time.Minute // the silent ones would wait past the test
	t.Cleanup(func() { linkIdentTime = identTime })
	tc := startCluster(t)
	d := tc.node(0).Directory()
	addr := d.linkLn.Addr().String()
	const n = 3 * linkIdentsMax
	var silent []net.Conn
	t.Cleanup(func() {
		for _, c := range silent {
			_ = c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	// Those refused read EOF at once; the others wait. Read all at once, with one
	// deadline, so that the waiting ones time out together.
	var closed atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Second)
	for _, c := range silent {
		wg.Go(func() {
			_ = c.SetReadDeadline(deadline)
			var b [1]byte
			if _, err := c.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				closed.Add(1)
			}
		})
	}
	wg.Wait()
	d.lnmu.Lock()
	waiting := len(d.linksNew)
	d.lnmu.Unlock()
	if waiting > linkIdentsMax || closed.Load() < n-linkIdentsMax {
		t.Fatalf("%d links waiting for their ident, %d closed; want at most %d waiting, the other %d closed",
			waiting, closed.Load(), linkIdentsMax, n-linkIdentsMax)
	}
}
