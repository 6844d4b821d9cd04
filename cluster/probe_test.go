package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// probeLeaseTTL is TestProbeTakeover's lease TTL: long enough that anything the test sees
// within its bounds comes from the probes, not from an expired lease.
const probeLeaseTTL = 30 * time.Second

// TestProbeTakeover: a killed node (no lease released) is found dead by probe long before
// its lease expires. A client's first REGISTER on another node of one of its names
// succeeds, a live node's name stays NAME_TAKEN, and SEND+ACK and REQUEST to the dead
// node's other names fail at once with NO_ROUTE instead of waiting for a TIMEOUT.
func TestProbeTakeover(t *testing.T) {
	tc := startClusterWith(t, func(c *Config) { c.LeaseTTL = probeLeaseTTL })
	xs := startServers(t, tc)
	a, b, c := xs[0], xs[1], xs[2]
	ad := a.cn.Directory()

	bob := b.peer(t, "bob")
	register(t, xs, bob, "bob", 1)
	register(t, xs, bob, "bob-other", 2)
	carol := c.peer(t, "carol")
	register(t, xs, carol, "carol", 1)
	sender := a.peer(t, "sender")

	// B crashes: its cluster node goes first (no lease released, no names deleted), then
	// its server.
	killed := time.Now()
	tc.kill(1)
	shutdownServer(t, b.srv)

	// bob's client, reconnecting to A, registers again: it is never told NAME_TAKEN. If B
	// led one of the KV buckets, claims end in UNAVAILABLE until the bucket has elected
	// a new leader (4-9 s), and the client retries after the retry-after, as here.
	if err := claimAgain(t, ad, "bob", conn(1, 100)); err != nil {
		t.Fatalf("claim on A of the killed node's name = %v; want success", err)
	}
	took := time.Since(killed)
	t.Logf("taken over %v after the kill (lease TTL %v, renew %v)", took.Round(time.Millisecond), probeLeaseTTL, tc.cfgs[0].LeaseRenew)
	if took >= probeLeaseTTL {
		t.Errorf("takeover took %v; want it before the lease TTL %v (the probe, not the expiry)", took, probeLeaseTTL)
	}
	waitFor(t, "C to see A as bob's owner", 5*time.Second, func() bool { return lookup(c.cn.Directory(), "bob") == conn(1, 100) })

	// A live node's name is still refused: C answers its probe. (UNAVAILABLE meanwhile if
	// the leases bucket is still electing a leader: the link finds the kill in
	// milliseconds, and the claim reads C's lease from the leader.)
	if err := claimAgain(t, ad, "carol", conn(1, 101)); !errors.Is(err, shard.ErrNameTaken) {
		t.Fatalf("claim on A of live C's name = %v; want ErrNameTaken", err)
	}

	// The dead node's other name: A's prober marks B down, and from then on SEND+ACK and
	// REQUEST get NO_ROUTE at once (before, TIMEOUT after request-timeout).
	waitFor(t, "A to take B for dead", 5*time.Second, func() bool { _, ok := ad.nodeEpoch(2); return !ok })
	sent := time.Now()
	sender.Write(codec.AppendSend(nil, codec.FlagAck, 10, "bob-other", []byte("x")))
	expect(t, sender, codec.TypeError, 10, codec.CodeNoRoute)
	sender.Write(codec.AppendRequest(nil, 11, "bob-other", 5000, []byte("y")))
	expect(t, sender, codec.TypeError, 11, codec.CodeNoRoute)
	if d := time.Since(sent); d >= time.Second {
		// A TIMEOUT would take the REQUEST's 5 s; expect already checked the code. This
		// bound only says the answer did not wait for anything (generous for a loaded CI).
		t.Logf("NO_ROUTE after %v", d)
	}
	if n := ad.nodesDown.Load(); n != 1 {
		t.Errorf("A took %d runs for dead; want 1", n)
	}
	// C takes B for dead too, and never live A.
	waitFor(t, "C to take B for dead", 5*time.Second, func() bool { _, ok := c.cn.Directory().nodeEpoch(2); return !ok })
	if _, ok := c.cn.Directory().nodeEpoch(1); !ok {
		t.Error("C takes live A for dead")
	}
	if n := c.cn.Directory().nodesDown.Load(); n != 1 {
		t.Errorf("C took %d runs for dead; want 1 (B only)", n)
	}
	// bob-other's client re-registers on C, which has B down already: a CAS on the
	// revision C's cache holds takes it over, and every node follows.
	if err := claimAgain(t, c.cn.Directory(), "bob-other", conn(3, 100)); err != nil {
		t.Fatalf("claim on C of the dead node's other name = %v; want success", err)
	}
	waitFor(t, "A to see C as bob-other's owner", 5*time.Second, func() bool { return lookup(ad, "bob-other") == conn(3, 100) })
	if n, m := ad.takeovers.Load(), c.cn.Directory().takeovers.Load(); n != 1 || m != 1 {
		t.Errorf("takeovers: A %d, C %d; want 1 each (bob, bob-other)", n, m)
	}
	barrier(t, carol, 3)
}

// claimAgain claims as a client does: asking again after the retry-after (1 s) while
// the answer is UNAVAILABLE (a KV election), 20 times at most.
func claimAgain(t *testing.T, d *Directory, name string, id shard.ConnID) error {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := claim(t, d, name, id)
		if !errors.Is(err, shard.ErrUnavailable) || attempt == 20 {
			return err
		}
		t.Logf("claim %d of %q: %v (a KV election); retrying", attempt, name, err)
		time.Sleep(time.Second) // the client's retry-after
	}
}

// TestTakeoverTime measures the time from a node's kill to the first successful claim of
// its name on another node, with the default lease (15 s, renewed every 1 s), claiming
// every 100 ms as a client retrying would. It runs only with CLUSTER_TAKEOVER_RUNS=N (N
// kills, docs/BENCHMARKS.md).
func TestTakeoverTime(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("CLUSTER_TAKEOVER_RUNS"))
	if runs <= 0 {
		t.Skip("set CLUSTER_TAKEOVER_RUNS=N to measure")
	}
	for run := range runs {
		t.Run(strconv.Itoa(run+1), func(t *testing.T) { measureTakeover(t) })
	}
}

func measureTakeover(t *testing.T) {
	{
		tc := startClusterWith(t, func(c *Config) {
			c.LeaseTTL, c.LeaseRenew, c.OpTimeout = DefaultLeaseTTL, DefaultLeaseRenew, DefaultOpTimeout
		})
		a, b := tc.node(0).Directory(), tc.node(1).Directory()
		if err := claim(t, b, "b-name", conn(2, 1)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "b-name in A's cache", 5*time.Second, func() bool { return lookup(a, "b-name") == conn(2, 1) })
		// The kill comes at a random point of B's renewal period, as a crash would.
		time.Sleep(rand.N(DefaultLeaseRenew))
		killed := time.Now()
		l, _ := a.member(2)
		tc.kill(1)
		stopped := time.Since(killed) // the in-process kill shuts B's NATS server down
		tries := 0
		waitFor(t, "A to take b-name over", 30*time.Second, func() bool {
			tries++
			if claim(t, a, "b-name", conn(1, 1)) == nil {
				return true
			}
			time.Sleep(80 * time.Millisecond) // with waitFor's 20 ms: a claim every ~100 ms
			return false
		})
		t.Logf("kill to re-claim %v (B's last renewal seen %v before the kill; the kill took %v; %d claims; lease TTL %v, renew %v)",
			time.Since(killed).Round(time.Millisecond), killed.Sub(l.seen).Round(time.Millisecond), stopped.Round(time.Millisecond),
			tries, DefaultLeaseTTL, DefaultLeaseRenew)
	}
}

// TestTakeoverManyTime measures how fast a node claims many names of a killed node once
// it has found that node dead, as the killed node's clients re-register there: node B
// (not a leader of either bucket, so that no election is measured) registers N names, is
// killed, and once A has marked it down A claims all N at once. It runs only with
// CLUSTER_TAKEOVER_MANY=N (docs/BENCHMARKS.md); CLUSTER_CLAIM_WORKERS sets ClaimWorkers.
func TestTakeoverManyTime(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CLUSTER_TAKEOVER_MANY"))
	if n <= 0 {
		t.Skip("set CLUSTER_TAKEOVER_MANY=N to measure")
	}
	workers, _ := strconv.Atoi(os.Getenv("CLUSTER_CLAIM_WORKERS"))
	batch, _ := strconv.Atoi(os.Getenv("CLUSTER_CLAIM_BATCH"))
	tc := startClusterWith(t, func(c *Config) {
		c.LeaseTTL = probeLeaseTTL
		c.ClaimQueue = max(c.ClaimQueue, n)
		if workers > 0 {
			c.ClaimWorkers = workers
		}
		if batch > 0 {
			c.ClaimBatch = batch
		}
	})
	a := tc.node(0).Directory()
	victim := -1
	for i := 1; i < 3 && victim < 0; i++ {
		if !leadsABucket(t, a, uint16(i+1)) {
			victim = i
		}
	}
	if victim < 0 {
		t.Skip("nodes 2 and 3 each lead a bucket; run again")
	}
	b := tc.node(victim).Directory()
	claimAll(t, b, n, uint16(victim+1))
	waitFor(t, "A to see every name", 30*time.Second, func() bool { return cacheLen(a) >= n })
	tc.kill(victim)
	waitFor(t, "A to take the victim for dead", 30*time.Second, func() bool {
		l, ok := a.member(uint16(victim + 1))
		return ok && l.down
	})
	start, cpu := time.Now(), cpuTime()
	claimAll(t, a, n, 1)
	took, cpu := time.Since(start), cpuTime()-cpu
	t.Logf("%d names of a dead node claimed by one node in %v: %.0f claims/s, %v of CPU a claim (the whole test process); claim workers %d, batches of up to %d: %d committed, %d refused, %d claims in them",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), (cpu / time.Duration(n)).Round(time.Microsecond), a.cfg.ClaimWorkers,
		a.cfg.ClaimBatch, a.batches[batchCommitted].Load(), a.batches[batchRefused].Load(), a.batched.Load())
}

// noLeaderKV answers every write as JetStream does while a bucket has no stream leader
// (its leader's node killed, the election not over): no responders, after nats.go's
// retries.
type noLeaderKV struct{ jetstream.KeyValue }

func (noLeaderKV) Update(context.Context, string, []byte, uint64) (uint64, error) {
	return 0, jetstream.ErrNoStreamResponse
}

// TestClaimWithoutLeader: a claim whose write reached no stream leader answers
// UNAVAILABLE and records no doubt — nothing can have landed — instead of a leader read,
// which during a real election waits the op timeout for the same missing leader and holds
// a claim worker that long (a killed names-bucket leader's ~16K clients re-registering).
// The leader is there for the read in this test: without the fix the claim records a
// doubt.
func TestClaimWithoutLeader(t *testing.T) {
	tc := startCluster(t)
	d := tc.node(0).Directory()
	// Set before the first claim; the claim worker reads it after the claim's channel
	// send, and nothing else writes to the names bucket in this test.
	d.names = noLeaderKV{d.names}
	if err := claim(t, d, "no-leader-name", conn(1, 7)); !errors.Is(err, shard.ErrUnavailable) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("claim with no stream leader = %v; want UNAVAILABLE (no response from stream)", err)
	}
	if n := d.doubtCount(); n != 0 {
		t.Errorf("claims in doubt = %d; want 0: a write that reached no leader cannot have landed", n)
	}
}

// claimAll claims many-0 .. many-(n-1) on d for connections of node at once and fails
// the test on any refusal.
func claimAll(t *testing.T, d *Directory, n int, node uint16) {
	t.Helper()
	errs := make(chan error, n)
	for i := range n {
		name := "many-" + strconv.Itoa(i)
		err := d.Claim(name, conn(node, uint32(i+1)), func(_ string, _ shard.ConnID, err error) { errs <- err })
		if !errors.Is(err, shard.ErrPending) {
			errs <- err
		}
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("claim: %v", err)
		}
	}
}

// cacheLen counts the live entries in d's cache.
func cacheLen(d *Directory) int {
	n := 0
	d.cache.each(func(_ string, e cached) {
		if !e.dead {
			n++
		}
	})
	return n
}

// leadsABucket reports whether node leads the names or the leases bucket's stream.
func leadsABucket(t *testing.T, d *Directory, node uint16) bool {
	t.Helper()
	return leads(t, d, d.namesBucket, node) || leads(t, d, d.leasesBucket, node)
}

// leads reports whether node leads bucket's stream, as d's NATS server sees it.
func leads(t *testing.T, d *Directory, bucket string, node uint16) bool {
	t.Helper()
	js, err := jetstream.New(d.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streamOf(bucket))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.Cluster != nil && info.Cluster.Leader == "node-"+strconv.Itoa(int(node))
}

// TestProbeUnansweredUndecided: a claim of a name whose owner's node holds a fresh lease
// but leaves the probe unanswered (hung, or killed before this node's NATS server saw its
// route close) is undecided — UNAVAILABLE, asked again — never NAME_TAKEN, which made a
// client that reconnected from a killed node give its name up. Once nobody answers for
// the node any more (its route gone) and its renewal is overdue, the claim succeeds.
func TestProbeUnansweredUndecided(t *testing.T) {
	tc := startClusterWith(t, func(c *Config) { c.LeaseTTL = probeLeaseTTL })
	ad := tc.nodes[0].Directory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Node 9, epoch 77: a lease and a name in the buckets, and a probe subscriber that
	// never answers.
	const ghost, epoch = uint16(9), uint64(77)
	if _, err := ad.leases.Put(ctx, leaseKey(ghost), appendLease(nil, lease{epoch: epoch, addr: "127.0.0.1:1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := ad.names.Put(ctx, nameKey("ghost-name"), appendOwner(nil, owner{id: conn(ghost, 5), epoch: epoch})); err != nil {
		t.Fatal(err)
	}
	silent, err := ad.nc.Subscribe(ad.probeSubject(ghost), func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := ad.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to see node 9's lease", 5*time.Second, func() bool { _, ok := ad.member(ghost); return ok })
	for i := range 3 { // the first probe times out; the next ones are skipped as quiet
		if err := claim(t, ad, "ghost-name", conn(1, uint32(100+i))); !errors.Is(err, shard.ErrUnavailable) {
			t.Fatalf("claim %d of an unanswering node's name = %v; want UNAVAILABLE", i, err)
		}
	}
	if err := silent.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	// No responders now; the lease is not renewed: once the renewal is overdue the node
	// is taken for dead and the name given to the claimant (a client retrying after its
	// retry-after).
	var last error
	waitFor(t, "the claim to succeed", 20*time.Second, func() bool {
		last = claim(t, ad, "ghost-name", conn(1, 200))
		if errors.Is(last, shard.ErrNameTaken) {
			t.Fatalf("claim = NAME_TAKEN; want UNAVAILABLE until decided, then success")
		}
		return last == nil
	})
}

// TestHungOwnerClaimsCheap: the claims of a hung node's names (its lease fresh, its
// probe subject silent) are UNAVAILABLE without each asking that node again. A hung node's
// clients reconnect elsewhere and ask again every retry-after until its lease expires;
// when each claim waited for its release query (500 ms), 16 claim workers decided ~30
// of them a second, and everyone else's claims queued behind them. Here the first round
// of claims meets the silent node; the second, right after, must not ask it again (the
// quiet period is LeaseRenew, 5 s here), and an unrelated new name is still claimed.
func TestHungOwnerClaimsCheap(t *testing.T) {
	tc := startClusterWith(t, func(c *Config) {
		c.LeaseTTL = probeLeaseTTL
		c.LeaseRenew = 5 * time.Second
	})
	ad := tc.nodes[0].Directory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const ghost, epoch, names = uint16(11), uint64(79), 100
	if _, err := ad.leases.Put(ctx, leaseKey(ghost), appendLease(nil, lease{epoch: epoch, addr: "127.0.0.1:1"})); err != nil {
		t.Fatal(err)
	}
	for i := range names {
		if _, err := ad.names.Put(ctx, nameKey("hung-"+strconv.Itoa(i)), appendOwner(nil, owner{id: conn(ghost, uint32(i+1)), epoch: epoch})); err != nil {
			t.Fatal(err)
		}
	}
	var asked atomic.Int64
	silent, err := ad.nc.Subscribe(ad.probeSubject(ghost), func(*nats.Msg) { asked.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = silent.Unsubscribe() }()
	if err := ad.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to see node 11's lease and names", 5*time.Second, func() bool {
		_, ok := ad.member(ghost)
		e, held := ad.cache.get("hung-" + strconv.Itoa(names-1))
		return ok && held && e.node() == ghost
	})
	round := func(r int) {
		t.Helper()
		errs := make(chan error, names)
		for i := range names {
			name := "hung-" + strconv.Itoa(i)
			err := ad.Claim(name, conn(1, uint32(1000*r+i)), func(_ string, _ shard.ConnID, err error) { errs <- err })
			if !errors.Is(err, shard.ErrPending) {
				errs <- err
			}
		}
		for range names {
			select {
			case err := <-errs:
				if !errors.Is(err, shard.ErrUnavailable) {
					t.Fatalf("round %d: claim of a hung node's name = %v; want UNAVAILABLE", r, err)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("round %d: claims unanswered after 20 s", r)
			}
		}
	}
	start := time.Now()
	round(1)
	first := asked.Load()
	if first == 0 {
		t.Fatal("round 1 asked the hung node nothing; the test does not test what it should")
	}
	t.Logf("round 1: %d queries to the hung node, answered in %v", first, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	round(2)
	if again := asked.Load() - first; again != 0 {
		t.Errorf("round 2 (within the quiet period) asked the hung node %d more times; want 0", again)
	}
	t.Logf("round 2: answered in %v", time.Since(start).Round(time.Millisecond))
	if err := claim(t, ad, "unrelated", conn(1, 5000)); err != nil {
		t.Errorf("an unrelated new name's claim = %v; want success", err)
	}
}

// TestProbeUnansweredThenGone: a probe that goes unanswered because the owner's node was
// killed while its routes were still open — interest in its probe subject gone by the
// time the probe times out — decides like "no responders": the claim waits for the
// renewal to be overdue and takes the name over, instead of answering UNAVAILABLE and
// leaving the client to come back after its retry-after (1 s). Measured before the fix:
// in a 100K-connection kill, the victim's clients reconnected before its routes closed
// and the median takeover came 0.4 s after the node was marked down.
func TestProbeUnansweredThenGone(t *testing.T) {
	tc := startClusterWith(t, func(c *Config) { c.LeaseTTL = probeLeaseTTL })
	ad := tc.nodes[0].Directory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Node 10, epoch 78: a lease (never renewed) and a name, and a probe subscriber that
	// does not answer and goes away when probed, as a killed node's routes close.
	const ghost, epoch = uint16(10), uint64(78)
	if _, err := ad.leases.Put(ctx, leaseKey(ghost), appendLease(nil, lease{epoch: epoch, addr: "127.0.0.1:1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := ad.names.Put(ctx, nameKey("dying-name"), appendOwner(nil, owner{id: conn(ghost, 6), epoch: epoch})); err != nil {
		t.Fatal(err)
	}
	probed := make(chan struct{}, 1)
	var dying *nats.Subscription
	dying, err := ad.nc.Subscribe(ad.probeSubject(ghost), func(*nats.Msg) {
		select {
		case probed <- struct{}{}:
			go func() { _ = dying.Unsubscribe() }()
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ad.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to see node 10's lease", 5*time.Second, func() bool { _, ok := ad.member(ghost); return ok })
	if err := claim(t, ad, "dying-name", conn(1, 300)); err != nil {
		t.Fatalf("claim of a name whose node went away during the probe = %v; want it taken over", err)
	}
	select {
	case <-probed:
	default:
		t.Fatal("the claim did not probe node 10")
	}
	if got := lookup(ad, "dying-name"); got != conn(1, 300) {
		t.Errorf("lookup = %v; want the claimant %v", got, conn(1, 300))
	}
}
