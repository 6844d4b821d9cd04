package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/shard"
)

// testConfig is a fast configuration for tests: a 3 s lease renewed every 300 ms.
func testConfig(node uint16) Config {
	c := DefaultConfig()
	c.Mode = ModeEmbedded
	c.NodeID = node
	c.Name = "test"
	c.LeaseTTL = 3 * time.Second
	c.LeaseRenew = 300 * time.Millisecond
	c.OpTimeout = 3 * time.Second
	return c
}

func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// testCluster is three embedded nodes in this process. Every route listener binds a
// port of its own choosing (127.0.0.1:0), so no port is picked before its listener holds
// it and nothing else on the host can take it in between: node 1 starts first as the
// seed, and nodes 2 and 3 are given its address. A node restarted by restart comes back
// on its address and is given every node's address, its own included, as one config
// template would give every node the same list.
type testCluster struct {
	t     testing.TB
	cfgs  []Config
	mu    sync.Mutex
	nodes []*Node  // guarded by mu; nil once stopped
	addrs []string // the nodes' route addresses, once all have started
}

func startCluster(t testing.TB) *testCluster {
	t.Helper()
	return startClusterWith(t, func(*Config) {})
}

// startClusterWith is startCluster with each node's testConfig changed by set.
func startClusterWith(t testing.TB, set func(*Config)) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, nodes: make([]*Node, 3)}
	for i := range 3 {
		c := testConfig(uint16(i + 1))
		c.Listen = "127.0.0.1:0"
		c.StoreDir = t.TempDir()
		set(&c)
		tc.cfgs = append(tc.cfgs, c)
	}
	seedAddr := make(chan string, 1)
	tc.cfgs[0].seed = true
	tc.cfgs[0].routeListen = func(addr string) { seedAddr <- addr }
	var wg sync.WaitGroup
	errs := make([]error, 3)
	seedDone := make(chan struct{})
	wg.Go(func() {
		defer close(seedDone)
		errs[0] = tc.start(0)
	})
	select {
	case addr := <-seedAddr:
		for i := 1; i < 3; i++ {
			tc.cfgs[i].Routes = addr
			wg.Go(func() { errs[i] = tc.start(i) })
		}
	case <-seedDone: // node 1 failed before its route listener was up
	}
	wg.Wait()
	tc.cfgs[0].routeListen = nil
	t.Cleanup(tc.stop)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		tc.addrs = append(tc.addrs, tc.node(i).ns.ClusterAddr().String())
	}
	// A node can return from Start isolated for a moment: it has seen another node's
	// lease through the KV before its NATS server has that node's probe interest through
	// the routes (once in a loaded CI run, 3.4 s into a start under -race). Tests begin
	// once every node is ready, as a client waits for /readyz.
	start := time.Now()
	waitFor(t, "every node to be ready", 30*time.Second, func() bool {
		for i := range 3 {
			if ok, _ := tc.node(i).Directory().Ready(); !ok {
				return false
			}
		}
		return true
	})
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Logf("the nodes were ready %v after Start returned", d.Round(time.Millisecond))
	}
	return tc
}

// restart starts node i again after kill, on the route address it had, with every
// node's address (its own included) as its routes.
func (tc *testCluster) restart(i int) error {
	tc.cfgs[i].Listen = tc.addrs[i]
	tc.cfgs[i].Routes = strings.Join(tc.addrs, ",")
	return tc.start(i)
}

func (tc *testCluster) start(i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := Start(ctx, tc.cfgs[i], testLogger(tc.t).With("node", i+1))
	if err != nil {
		return fmt.Errorf("node %d: %w", i+1, err)
	}
	tc.mu.Lock()
	tc.nodes[i] = n
	tc.mu.Unlock()
	return nil
}

func (tc *testCluster) node(i int) *Node {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.nodes[i]
}

func (tc *testCluster) kill(i int) {
	tc.mu.Lock()
	n := tc.nodes[i]
	tc.nodes[i] = nil
	tc.mu.Unlock()
	n.kill()
}

// stop closes the nodes one after the other, as a rolling stop would.
func (tc *testCluster) stop() {
	start := time.Now()
	for i := range 3 {
		if n := tc.node(i); n != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = n.Close(ctx)
			cancel()
		}
	}
	tc.t.Logf("cluster stopped in %v", time.Since(start).Round(time.Millisecond))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// claim claims name for id on d and waits for the outcome (pending or not).
func claim(t testing.TB, d *Directory, name string, id shard.ConnID) error {
	t.Helper()
	ch := make(chan error, 1)
	err := d.Claim(name, id, func(n string, got shard.ConnID, err error) {
		if n != name || got != id {
			t.Errorf("ClaimFunc(%q, %v); want (%q, %v)", n, got, name, id)
		}
		ch <- err
	})
	if !errors.Is(err, shard.ErrPending) {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("claim of %q undecided after 10s", name)
		return nil
	}
}

func lookup(d *Directory, name string) shard.ConnID {
	id, _ := d.Lookup([]byte(name))
	return id
}

func conn(node uint16, slot uint32) shard.ConnID { return shard.MakeConnID(node, 0, slot, 1) }

// TestCluster runs three embedded nodes through the directory's life: one owner per
// name across nodes, caches that follow, unregister, a duplicate node id refused, a
// crashed node's restart sweeping its old entries, and takeover of a dead node's names
// once its lease expires.
func TestCluster(t *testing.T) {
	tc := startCluster(t)
	a, b, c := tc.node(0).Directory(), tc.node(1).Directory(), tc.node(2).Directory()
	for i, d := range []*Directory{a, b, c} {
		if ok, why := d.Ready(); !ok {
			t.Fatalf("node %d not ready after Start: %s", i+1, why)
		}
	}

	t.Run("one owner across nodes", func(t *testing.T) {
		if err := claim(t, a, "svc", conn(1, 1)); err != nil {
			t.Fatalf("claim on A: %v", err)
		}
		if got := lookup(a, "svc"); got != conn(1, 1) {
			t.Fatalf("A's Lookup = %v right after its claim; want %v", got, conn(1, 1))
		}
		if err := claim(t, b, "svc", conn(2, 1)); !errors.Is(err, shard.ErrNameTaken) {
			t.Fatalf("claim on B of A's name = %v; want ErrNameTaken", err)
		}
		waitFor(t, "svc in B's and C's caches", 5*time.Second, func() bool {
			return lookup(b, "svc") == conn(1, 1) && lookup(c, "svc") == conn(1, 1)
		})
		if a.Len() != 1 || b.Len() != 0 {
			t.Errorf("Len: A %d, B %d; want 1, 0", a.Len(), b.Len())
		}
		// A claim again by the owner is owned at once.
		if err := a.Claim("svc", conn(1, 1), nil); err != nil {
			t.Errorf("repeated claim by the owner = %v; want nil", err)
		}
	})

	t.Run("race", func(t *testing.T) {
		// Three nodes claim one new name at once: the KV lets exactly one win.
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i, d := range []*Directory{a, b, c} {
			wg.Go(func() { errs[i] = claim(t, d, "race", conn(uint16(i+1), 2)) })
		}
		wg.Wait()
		won := 0
		var winner shard.ConnID
		for i, err := range errs {
			switch {
			case err == nil:
				won++
				winner = conn(uint16(i+1), 2)
			case !errors.Is(err, shard.ErrNameTaken):
				t.Errorf("node %d: %v", i+1, err)
			}
		}
		if won != 1 {
			t.Fatalf("%d claims won; want 1 (%v)", won, errs)
		}
		waitFor(t, "every cache to agree on the winner", 5*time.Second, func() bool {
			return lookup(a, "race") == winner && lookup(b, "race") == winner && lookup(c, "race") == winner
		})
	})

	t.Run("names view", func(t *testing.T) {
		// svc is A's (conn(1, 1)); race is the winner's. WriteNames shows svc as A's own
		// and, on B, as A's in its cache, live.
		views := make([]NamesView, 3)
		for i := range 3 {
			var buf bytes.Buffer
			if err := tc.node(i).WriteNames(&buf); err != nil {
				t.Fatalf("node %d WriteNames: %v", i+1, err)
			}
			if err := json.Unmarshal(buf.Bytes(), &views[i]); err != nil {
				t.Fatalf("node %d WriteNames wrote invalid JSON: %v\n%s", i+1, err, buf.String())
			}
			if v := views[i]; v.NodeID != uint16(i+1) || v.Epoch != tc.node(i).Directory().Epoch() {
				t.Errorf("node %d view: node_id %d, epoch %d; want %d, %d", i+1, v.NodeID, v.Epoch, i+1, tc.node(i).Directory().Epoch())
			}
		}
		if !slices.Contains(views[0].Local, LocalName{Name: "svc", Conn: uint64(conn(1, 1))}) {
			t.Errorf("A's local names = %+v; want svc of %v", views[0].Local, conn(1, 1))
		}
		want := RemoteName{Name: "svc", Node: 1, Epoch: a.Epoch(), Conn: uint64(conn(1, 1)), Live: true}
		if !slices.Contains(views[1].Remote, want) {
			t.Errorf("B's remote names = %+v; want %+v", views[1].Remote, want)
		}
		owners := 0
		for _, v := range views {
			for _, l := range v.Local {
				owners += b2i(l.Name == "race")
			}
		}
		if owners != 1 {
			t.Errorf("race is local on %d nodes; want 1", owners)
		}
	})

	t.Run("unregister frees the name", func(t *testing.T) {
		if err := a.Unregister("svc", conn(1, 9)); !errors.Is(err, shard.ErrNotOwner) {
			t.Fatalf("Unregister by another connection = %v; want ErrNotOwner", err)
		}
		if err := a.Unregister("svc", conn(1, 1)); err != nil {
			t.Fatal(err)
		}
		if _, ok := a.Lookup([]byte("svc")); ok {
			t.Fatal("A still finds svc after Unregister")
		}
		waitFor(t, "svc gone from B's cache", 5*time.Second, func() bool { _, ok := b.Lookup([]byte("svc")); return !ok })
		if err := claim(t, b, "svc", conn(2, 1)); err != nil {
			t.Fatalf("claim on B after A let go: %v", err)
		}
		waitFor(t, "svc moved to B in A's cache", 5*time.Second, func() bool { return lookup(a, "svc") == conn(2, 1) })
	})

	t.Run("claim again before the delete ran", func(t *testing.T) {
		// UNREGISTER then REGISTER of one name by one connection, the second decided
		// before the KV delete of the first ran: the delete must not remove the new
		// registration.
		id := conn(1, 3)
		if err := claim(t, a, "again", id); err != nil {
			t.Fatal(err)
		}
		e, _ := a.cache.get("again")
		// Unregister without waking the deleter (as if it were busy).
		tomb := e
		tomb.dead = true
		a.cache.set("again", tomb)
		a.queueDelete("again", e.rev)
		if err := claim(t, a, "again", id); err != nil {
			t.Fatalf("claim again: %v", err)
		}
		a.uwake <- struct{}{}
		waitFor(t, "the delete to run", 5*time.Second, func() bool {
			a.umu.Lock()
			defer a.umu.Unlock()
			return len(a.unregs) == 0
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		data, _, st, err := lastMsg(ctx, a.nc, streamOf(a.namesBucket), subjectOf(a.namesBucket, nameKey("again")))
		if o, _ := parseOwner(data); err != nil || st != msgPresent || o.id != id {
			t.Fatalf("KV after the delete: %v %v owner %v; want the second registration", err, st, o.id)
		}
		if got := lookup(a, "again"); got != id {
			t.Errorf("A's Lookup = %v; want %v", got, id)
		}
	})

	t.Run("node id in use", func(t *testing.T) {
		// A second process with B's node id, joining through A's client port.
		cfg := testConfig(2)
		cfg.Mode, cfg.URL = ModeExternal, tc.node(0).ns.ClientURL()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := Start(ctx, cfg, testLogger(t))
		if err == nil {
			_ = n.Close(ctx)
		}
		if !errors.Is(err, ErrNodeIDInUse) {
			t.Fatalf("Start with a live node's id = %v; want ErrNodeIDInUse", err)
		}
	})

	t.Run("external node", func(t *testing.T) {
		// A node without its own NATS server, connected to B's: a full member.
		cfg := testConfig(4)
		cfg.Mode, cfg.URL = ModeExternal, tc.node(1).ns.ClientURL()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := Start(ctx, cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = n.Close(ctx) }()
		x := n.Directory()
		if got := lookup(x, "svc"); got != conn(2, 1) {
			t.Errorf("external node's Lookup(svc) = %v after start; want %v (replayed)", got, conn(2, 1))
		}
		if err := claim(t, x, "ext", conn(4, 1)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "ext in A's cache", 5*time.Second, func() bool { return lookup(a, "ext") == conn(4, 1) })
		// Nobody takes itself for cut off: B reaches the external node as its own client,
		// A and C through their routes to B, and the external node through its connection.
		waitFor(t, "every node to know the external one", 5*time.Second, func() bool {
			_, ok := c.nodeEpoch(4)
			return ok
		})
		for i, d := range []*Directory{a, b, c, x} {
			d.checkIsolation()
			if d.isolated.Load() {
				t.Errorf("node %d takes itself for isolated with an external node in the cluster", []int{1, 2, 3, 4}[i])
			}
		}
	})

	t.Run("peers ranked for clients", func(t *testing.T) {
		report := func(i int, st Status) { tc.node(i).ReportStatus(func() Status { return st }) }
		report(0, Status{Addr: "10.0.0.1:7400", Load: 0.9})
		report(1, Status{Addr: "10.0.0.2:7400", Load: 0.5})
		report(2, Status{Addr: "10.0.0.3:7400", Load: 0.1})
		var mu sync.Mutex
		var got []string
		tc.node(0).OnPeers(func(p []string) { mu.Lock(); got = p; mu.Unlock() })
		defer tc.node(0).OnPeers(func([]string) {})
		want := func(what string, addrs ...string) {
			t.Helper()
			waitFor(t, what, 5*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return slices.Equal(got, addrs)
			})
		}
		want("A's peers, least loaded first, A itself left out", "10.0.0.3:7400", "10.0.0.2:7400")
		report(2, Status{Addr: "10.0.0.3:7400", Load: 0.1, Draining: true})
		want("a draining node left out", "10.0.0.2:7400")
		report(1, Status{Addr: "10.0.0.2:7400", Load: 0.05, Zone: 3})
		report(2, Status{Addr: "10.0.0.3:7400", Load: 0.3})
		want("a RED node after a GREEN one, whatever its load", "10.0.0.3:7400", "10.0.0.2:7400")
	})

	t.Run("restart sweeps", func(t *testing.T) {
		if err := claim(t, c, "c-old", conn(3, 5)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "c-old in A's cache", 5*time.Second, func() bool { return lookup(a, "c-old") == conn(3, 5) })
		old := c.Epoch()
		tc.kill(2) // a crash: the entry and the lease stay behind
		if err := tc.restart(2); err != nil {
			t.Fatal(err)
		}
		c = tc.node(2).Directory()
		if c.Epoch() == old {
			t.Fatalf("restarted node kept epoch %d", old)
		}
		// Lookup skips an earlier run's entry as soon as A sees the new lease; the entry
		// itself goes with the sweep.
		waitFor(t, "A's Lookup to skip the crashed run's c-old", 5*time.Second, func() bool {
			_, ok := a.Lookup([]byte("c-old"))
			return !ok
		})
		waitFor(t, "the crashed run's c-old swept from A's cache", 5*time.Second, func() bool {
			_, ok := a.cache.get("c-old")
			return !ok
		})
		if err := claim(t, c, "c-old", conn(3, 6)); err != nil {
			t.Fatalf("claim after the sweep: %v", err)
		}
	})

	t.Run("takeover after lease expiry", func(t *testing.T) {
		if err := claim(t, a, "a-name", conn(1, 7)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a-name in B's cache", 5*time.Second, func() bool { return lookup(b, "a-name") == conn(1, 7) })
		// A hangs rather than dies: something still subscribes to its probe subject but
		// never answers (as a stopped process whose connections stay open). A probe that
		// times out does not count as dead: only the lease's expiry frees A's names.
		hung, err := b.nc.Subscribe(b.probeSubject(1), func(*nats.Msg) {})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = hung.Unsubscribe() }()
		// A hung process also keeps its links to the other nodes open (link.go).
		a.hangLinks.Store(true)
		defer a.closeHungLinks()
		killed := time.Now()
		tc.kill(0) // A's lease is left to expire
		// Undecided: the probe goes unanswered (or, when A led a bucket, its election is
		// under way). Never NAME_TAKEN, which a client reconnecting from A would take for
		// its name's loss.
		if err := claim(t, b, "a-name", conn(2, 7)); !errors.Is(err, shard.ErrUnavailable) {
			t.Fatalf("claim while A's lease lives = %v; want ErrUnavailable", err)
		}
		// Again once A's renewal is overdue: undecided (the probe goes unanswered, and
		// the renewal is missing too: UNAVAILABLE, so that a client reconnecting from A
		// tries again until the lease has expired). A success before the lease could have
		// expired would be a takeover by probe.
		waitFor(t, "A's renewal overdue", 5*time.Second, func() bool { return time.Since(killed) > b.overdue()+probeEvery })
		err = claim(t, b, "a-name", conn(2, 7))
		_, live := b.nodeEpoch(1)
		if early := time.Since(killed) < tc.cfgs[0].LeaseTTL-tc.cfgs[0].LeaseRenew; early && (!errors.Is(err, shard.ErrUnavailable) || !live) {
			t.Fatalf("%v after A hung: claim = %v, A live = %v; want ErrUnavailable and live until its lease expires", time.Since(killed), err, live)
		}
		waitFor(t, "B to take a-name over", 10*time.Second, func() bool {
			err = claim(t, b, "a-name", conn(2, 7))
			return err == nil
		})
		t.Logf("taken over %v after the kill (lease TTL %v; A hung, so not by probe)", time.Since(killed).Round(time.Millisecond), tc.cfgs[0].LeaseTTL)
		waitFor(t, "C to see B as the owner", 5*time.Second, func() bool { return lookup(c, "a-name") == conn(2, 7) })
		// The race winner may have been A's: it is free for the next claim too.
	})
}

// TestFence: a node that loses its quorum (the other two stop) cannot renew its lease and
// fences itself before the lease can expire: it serves no names (Lookup finds none, Claim
// fails UNAVAILABLE), is not ready, and tells its OnFence callback once.
func TestFence(t *testing.T) {
	tc := startCluster(t)
	a := tc.node(0)
	d := a.Directory()
	if err := claim(t, d, "fenced-name", conn(1, 1)); err != nil {
		t.Fatal(err)
	}
	fenced := make(chan time.Time, 2)
	a.OnFence(func() { fenced <- time.Now() })
	tc.kill(1)
	tc.kill(2)
	// Cut off from both others, A stops serving names at once (the others could take them
	// over by probe after one missed renewal), and fences itself later. On a loaded machine
	// the two kills can take longer than the fence limit (2.5 s here): then the fence
	// comes first, and the isolation check, which stops with the fence, is moot.
	waitFor(t, "A to see itself isolated (or fenced)", 10*time.Second, func() bool { return d.isolated.Load() || d.fenced.Load() })
	if !d.fenced.Load() {
		if _, ok := d.Lookup([]byte("fenced-name")); ok {
			t.Error("an isolated node still finds its name")
		}
		if d.Serving() {
			t.Error("an isolated node still delivers what other nodes forward to its connections")
		}
		if err := d.Claim("isolated", conn(1, 3), func(string, shard.ConnID, error) {}); !errors.Is(err, shard.ErrUnavailable) {
			t.Errorf("Claim on an isolated node = %v; want ErrIsolated (shard.ErrUnavailable)", err)
		}
	} else {
		t.Log("fenced before the isolation check saw both kills")
	}
	var at time.Time
	select {
	case at = <-fenced:
	case <-time.After(30 * time.Second):
		t.Fatal("node A did not fence itself within 30 s of losing its quorum")
	}
	last := d.base.Add(time.Duration(d.lastRenew.Load()))
	t.Logf("fenced %v after the last renewal was sent (lease TTL %v, guard %v)",
		at.Sub(last).Round(time.Millisecond), tc.cfgs[0].LeaseTTL, d.fenceGuard())
	if _, ok := d.Lookup([]byte("fenced-name")); ok {
		t.Error("a fenced node still finds its name")
	}
	err := d.Claim("another", conn(1, 2), func(string, shard.ConnID, error) {})
	if !errors.Is(err, ErrFenced) || !errors.Is(err, shard.ErrUnavailable) {
		t.Errorf("Claim on a fenced node = %v; want ErrFenced (shard.ErrUnavailable)", err)
	}
	if ok, why := d.Ready(); ok || !strings.Contains(why, "fenced") {
		t.Errorf("Ready = %v %q; want false, fenced", ok, why)
	}
	if !d.Fenced() {
		t.Error("Fenced() = false")
	}
	select {
	case <-fenced:
		t.Error("OnFence called twice")
	case <-time.After(300 * time.Millisecond):
	}
}

func TestIsolatedNow(t *testing.T) {
	for _, c := range []struct {
		connected       bool
		reached, others int
		want            bool
	}{
		{true, 2, 2, false},  // all routes up
		{true, 1, 2, false},  // one of two others lost: still with the majority
		{true, 0, 2, true},   // cut off from both
		{true, 1, 3, true},   // one of three others: a minority
		{true, 2, 4, false},  // half of four
		{true, 0, 0, false},  // alone in the cluster: nothing to be cut off from
		{true, 0, 1, true},   // two nodes, the other unreachable
		{true, -1, 5, false}, // external mode: routes unknown, connected
		{false, -1, 5, true}, // external mode, NATS connection down
		{false, 2, 2, true},  // embedded, in-process connection down
	} {
		if got := isolatedNow(c.connected, c.reached, c.others); got != c.want {
			t.Errorf("isolatedNow(%v, %d, %d) = %v; want %v", c.connected, c.reached, c.others, got, c.want)
		}
	}
}

// TestBucketLeaseTTLWins: a node started with a longer cluster-lease-ttl than the leases
// bucket it finds (created by the others) fences by the bucket's TTL, which is what the
// KV expires its lease by, and renews often enough for it; a longer bucket TTL changes
// nothing. Otherwise it would fence after its lease expired, and another node could give
// its names away while it still served them.
func TestBucketLeaseTTLWins(t *testing.T) {
	for _, tc := range []struct{ bucket, ttl, renew, wantTTL, wantRenew time.Duration }{
		{3 * time.Second, 9 * time.Second, 2 * time.Second, 3 * time.Second, time.Second},
		{3 * time.Second, 9 * time.Second, 300 * time.Millisecond, 3 * time.Second, 300 * time.Millisecond},
		{9 * time.Second, 3 * time.Second, time.Second, 3 * time.Second, time.Second},
		{0, 3 * time.Second, time.Second, 3 * time.Second, time.Second},
	} {
		if ttl, renew := bucketLease(tc.bucket, tc.ttl, tc.renew); ttl != tc.wantTTL || renew != tc.wantRenew {
			t.Errorf("bucketLease(%v, %v, %v) = %v, %v; want %v, %v", tc.bucket, tc.ttl, tc.renew, ttl, renew, tc.wantTTL, tc.wantRenew)
		}
	}

	cl := startCluster(t) // the buckets get testConfig's 3 s TTL
	cl.kill(2)
	cl.cfgs[2].LeaseTTL, cl.cfgs[2].LeaseRenew = 9*time.Second, 2*time.Second
	if err := cl.restart(2); err != nil {
		t.Fatal(err)
	}
	d := cl.node(2).Directory()
	if d.cfg.LeaseTTL != 3*time.Second || d.cfg.LeaseRenew != time.Second {
		t.Fatalf("node 3 with a 9 s lease TTL on a 3 s bucket: TTL %v renew %v; want 3s, 1s", d.cfg.LeaseTTL, d.cfg.LeaseRenew)
	}
	if r := cl.node(2).Report(); r.LeaseTTLMs != 3000 {
		t.Errorf("/cluster lease_ttl_ms %d; want the bucket's 3000", r.LeaseTTLMs)
	}
}

// TestLeaseTakenFences: a node whose lease another run of its node id has taken (a
// replacement started while it was stopped, or a second node given the same id) fences
// itself at its next renewal, so that its supervisor drains it and its clients go
// elsewhere, and does not delete the other run's lease; it used to stay up, unready,
// with its clients, forever.
func TestLeaseTakenFences(t *testing.T) {
	cl := startCluster(t)
	a := cl.node(0)
	d := a.Directory()
	fenced := make(chan struct{}, 2)
	a.OnFence(func() { fenced <- struct{}{} })
	other := lease{epoch: d.epoch + 1, addr: "10.0.0.9:7400"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.leases.Put(ctx, leaseKey(1), appendLease(nil, other)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fenced:
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not fence itself within 10 s of its lease being taken")
	}
	if ok, why := d.Ready(); ok || !strings.Contains(why, "another run") {
		t.Errorf("Ready = %v %q; want false, taken by another run", ok, why)
	}
	if err := d.Claim("after", conn(1, 9), func(string, shard.ConnID, error) {}); !errors.Is(err, ErrLeaseLost) || !errors.Is(err, shard.ErrUnavailable) {
		t.Errorf("Claim = %v; want ErrLeaseLost as UNAVAILABLE", err)
	}
	e, err := d.leases.Get(ctx, leaseKey(1))
	if err != nil {
		t.Fatalf("the other run's lease: %v", err)
	}
	if l, ok := parseLease(e.Value()); !ok || l.epoch != other.epoch {
		t.Errorf("the lease now holds epoch %d; want the other run's %d, left alone", l.epoch, other.epoch)
	}
}

// TestIsolation: a node cut off from both others (killed) stops serving names within its
// fence check, long before its lease could lapse (here 30 s, so the fence does not come
// first, as it does in TestFence on a slow machine): Lookup finds none, REGISTER is
// UNAVAILABLE, it is not ready, and what another node still forwarded would be refused.
func TestIsolation(t *testing.T) {
	cl := startClusterWith(t, func(c *Config) { c.LeaseTTL = 30 * time.Second })
	d := cl.node(0).Directory()
	if err := claim(t, d, "cut-off", conn(1, 1)); err != nil {
		t.Fatal(err)
	}
	if !d.Serving() {
		t.Fatal("a ready node does not serve")
	}
	// Isolation is judged against the other nodes node 1 knows from its leases watch.
	// Node 1 started first, so the watch's replay (which readiness waits for) showed no
	// other node, and it learns of them from the updates that follow: once in a CI run
	// node 1 had seen no other lease when they were killed, and never judged itself
	// isolated.
	waitFor(t, "node 1 to know the other two nodes", 20*time.Second, func() bool {
		_, two := d.member(2)
		_, three := d.member(3)
		return two && three
	})
	cl.kill(1)
	cl.kill(2)
	waitFor(t, "node 1 to see itself isolated", 20*time.Second, func() bool { return d.isolated.Load() })
	if d.fenced.Load() {
		t.Fatal("fenced before isolated with a 30 s lease")
	}
	if _, ok := d.Lookup([]byte("cut-off")); ok {
		t.Error("an isolated node still finds its name")
	}
	if d.Serving() {
		t.Error("an isolated node still delivers what other nodes forward to its connections")
	}
	if err := d.Claim("new", conn(1, 2), func(string, shard.ConnID, error) {}); !errors.Is(err, ErrIsolated) {
		t.Errorf("Claim on an isolated node = %v; want ErrIsolated", err)
	}
	if ok, why := d.Ready(); ok || !strings.Contains(why, "isolated") {
		t.Errorf("Ready = %v %q; want false, isolated", ok, why)
	}
}

// TestStartKnowsPeers: a node is not ready (Start has not returned) before its leases
// watch has replayed the bucket, so a name another node holds is found live from its
// first lookup. With the leases watch held back and readiness waiting for the names watch
// alone, a restarted node answered every such lookup "no route" until the leases came.
func TestStartKnowsPeers(t *testing.T) {
	cl := startCluster(t)
	if err := claim(t, cl.node(0).Directory(), "held-by-1", conn(1, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 3 to see node 1's name", 20*time.Second, func() bool {
		return lookup(cl.node(2).Directory(), "held-by-1") == conn(1, 1)
	})
	cl.kill(2)
	cl.cfgs[2].watchStart = func(what string) {
		if what == "leases" {
			time.Sleep(time.Second)
		}
	}
	if err := cl.restart(2); err != nil {
		t.Fatal(err)
	}
	d := cl.node(2).Directory()
	for _, node := range []uint16{1, 2} {
		if l, ok := d.member(node); !ok || l.down {
			t.Errorf("node 3 started without knowing node %d live (known %v, down %v)", node, ok, l.down)
		}
	}
	if got, ok := d.Lookup([]byte("held-by-1")); !ok || got != conn(1, 1) {
		t.Errorf("node 3's first lookup of node 1's name = %v, %v; want %v, true", got, ok, conn(1, 1))
	}
}

// TestNameMarkersExpire: a name let go leaves a marker in the names stream that expires,
// and the name is claimed again by a plain create afterwards. With plain deletes every
// name ever registered and let go stayed in the stream for good, on every JetStream node.
func TestNameMarkersExpire(t *testing.T) {
	cl := startClusterWith(t, func(c *Config) { c.markerTTL = 2 * time.Second })
	a, b := cl.node(0).Directory(), cl.node(1).Directory()
	waitFor(t, "the names stream to take message TTLs", 10*time.Second, a.markerTTLOn.Load)
	var names []string
	for i := range 20 {
		name := "marker-" + strconv.Itoa(i)
		if err := claim(t, a, name, conn(1, uint32(i+1))); err != nil {
			t.Fatal(err)
		}
		if err := a.Unregister(name, conn(1, uint32(i+1))); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	state := func(name string) msgState {
		_, _, st, err := lastMsg(context.Background(), a.nc, streamOf(a.namesBucket), subjectOf(a.namesBucket, nameKey(name)))
		if err != nil {
			t.Fatalf("%q: leader read: %v", name, err)
		}
		return st
	}
	waitFor(t, "the names' markers", 10*time.Second, func() bool {
		for _, name := range names {
			if state(name) != msgDeleted {
				return false
			}
		}
		return true
	})
	marked := time.Now()
	waitFor(t, "the names' markers to expire", 20*time.Second, func() bool {
		for _, name := range names {
			if state(name) != msgAbsent {
				return false
			}
		}
		return true
	})
	if d := time.Since(marked); d < time.Second {
		t.Errorf("markers gone %v after they were seen; want about their 2 s TTL", d)
	}
	for _, d := range []*Directory{a, b} {
		if id, ok := d.Lookup([]byte(names[0])); ok {
			t.Errorf("node %d still finds %q (%v) after its removal", d.cfg.NodeID, names[0], id)
		}
	}
	if err := claim(t, b, names[0], conn(2, 1)); err != nil {
		t.Fatalf("claim of a name whose marker expired = %v; want OK", err)
	}
}
