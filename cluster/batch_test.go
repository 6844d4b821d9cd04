package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/shard"
)

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// holdWorker keeps d's only claim worker busy (deciding a claim of name) until the
// returned function is called, so that the claims queued meanwhile wait together, as
// they do behind busy workers when a killed node's clients come back.
func holdWorker(t *testing.T, d *Directory, name string, id shard.ConnID) (release func() error) {
	t.Helper()
	if d.cfg.ClaimWorkers != 1 {
		t.Fatalf("holdWorker needs ClaimWorkers 1, got %d", d.cfg.ClaimWorkers)
	}
	held, hold, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	var once sync.Once
	free := func() { once.Do(func() { close(hold) }) }
	// A test that fails before it releases the worker must not leave it held: the
	// cluster's stop waits for it.
	t.Cleanup(free)
	err := d.Claim(name, id, func(_ string, _ shard.ConnID, err error) {
		close(held)
		<-hold
		done <- err
	})
	if !errors.Is(err, shard.ErrPending) {
		t.Fatalf("claim %q = %v; want pending", name, err)
	}
	select {
	case <-held: // decided alone: nothing else was queued
	case <-time.After(10 * time.Second):
		t.Fatalf("claim %q undecided after 10s", name)
	}
	return func() error {
		free()
		return <-done
	}
}

// claimQueued queues claims of names for ids on d and returns their outcomes, by name,
// once all are decided.
func claimQueued(t *testing.T, d *Directory, names []string, ids []shard.ConnID, release func() error) map[string]error {
	t.Helper()
	type result struct {
		name string
		err  error
	}
	out := make(chan result, len(names))
	for i, name := range names {
		err := d.Claim(name, ids[i], func(n string, _ shard.ConnID, err error) { out <- result{n, err} })
		if !errors.Is(err, shard.ErrPending) {
			t.Fatalf("claim %q = %v; want pending (queued behind the held worker)", name, err)
		}
	}
	if err := release(); err != nil {
		t.Fatalf("the held claim: %v", err)
	}
	got := make(map[string]error, len(names))
	deadline := time.After(30 * time.Second)
	for range names {
		select {
		case r := <-out:
			got[r.name] = r.err
		case <-deadline:
			t.Fatalf("%d of %d claims undecided after 30s", len(names)-len(got), len(names))
		}
	}
	return got
}

// checkEntries fails unless the leader's entry of each name is me's, at the revision
// d's cache holds for it: a batch's revisions are computed from its commit's sequence.
func checkEntries(t *testing.T, d *Directory, names []string, owners []owner) {
	t.Helper()
	for i, name := range names {
		data, rev, st, err := lastMsg(context.Background(), d.nc, streamOf(d.namesBucket), subjectOf(d.namesBucket, nameKey(name)))
		if err != nil || st != msgPresent {
			t.Errorf("%q: leader read = state %d, %v; want an entry", name, st, err)
			continue
		}
		if o, ok := parseOwner(data); !ok || o != owners[i] {
			t.Errorf("%q: leader's entry %+v; want %+v", name, o, owners[i])
		}
		if e, ok := d.cache.get(name); !ok || e.owner != owners[i] || e.rev != rev {
			t.Errorf("%q: cache %+v (present %v); want owner %+v at the leader's revision %d", name, e, ok, owners[i], rev)
		}
	}
}

// TestClaimBatch: claims queued behind a busy worker are written in atomic batches —
// new names, a name another node's live connection holds (which the cache knows: its
// node is asked, says it holds it, and the claim is decided alone), and names of a run
// found dead (taken over on the cached revision) — and each gets the outcome it gets
// alone, with the cache at the KV's revisions.
func TestClaimBatch(t *testing.T) {
	tc := startClusterWith(t, func(c *Config) { c.ClaimWorkers = 1 })
	a, b := tc.node(0).Directory(), tc.node(1).Directory()
	waitFor(t, "the names stream to take atomic batches", 10*time.Second, a.batchOn.Load)
	if err := claim(t, b, "batch-taken", conn(2, 1)); err != nil {
		t.Fatal(err)
	}
	// Entries of a run of node 9 that a found dead: a killed node's names.
	const dead = 9
	deadRun := owner{id: conn(dead, 1), epoch: 77}
	var orphans []string
	for i := range 40 {
		name := "batch-orphan-" + strconv.Itoa(i)
		o := deadRun
		o.id = conn(dead, uint32(i+1))
		if _, err := a.names.Create(context.Background(), nameKey(name), appendOwner(nil, o)); err != nil {
			t.Fatal(err)
		}
		orphans = append(orphans, name)
	}
	waitFor(t, "a to see the taken name and the orphans", 10*time.Second, func() bool {
		_, ok := a.cache.get("batch-taken")
		e, ok2 := a.cache.get(orphans[len(orphans)-1])
		return ok && ok2 && e.epoch == deadRun.epoch
	})
	a.lmu.Lock()
	a.liveNodes[dead] = lease{epoch: deadRun.epoch, down: true, downAt: time.Now()}
	a.lmu.Unlock()

	var names []string
	var ids []shard.ConnID
	var owners []owner
	add := func(name string, slot uint32) {
		names, ids = append(names, name), append(ids, conn(1, slot))
		owners = append(owners, owner{id: conn(1, slot), epoch: a.epoch})
	}
	for i := range 100 {
		add("batch-new-"+strconv.Itoa(i), uint32(100+i))
		if i == 50 {
			add("batch-taken", 99)
		}
		if i < len(orphans) {
			add(orphans[i], uint32(200+i))
		}
	}
	takeovers := a.takeovers.Load()
	got := claimQueued(t, a, names, ids, holdWorker(t, a, "batch-first", conn(1, 1)))
	var ok []string
	var okOwners []owner
	for i, name := range names {
		switch err := got[name]; {
		case name == "batch-taken":
			if !errors.Is(err, shard.ErrNameTaken) {
				t.Errorf("%q (b's connection's) = %v; want NAME_TAKEN", name, err)
			}
		case err != nil:
			t.Errorf("%q = %v; want OK", name, err)
		default:
			ok, okOwners = append(ok, name), append(okOwners, owners[i])
		}
	}
	checkEntries(t, a, ok, okOwners)
	if n := a.takeovers.Load() - takeovers; n != int64(len(orphans)) {
		t.Errorf("takeovers %d; want %d", n, len(orphans))
	}
	committed, batched := a.batches[batchCommitted].Load(), a.batched.Load()
	t.Logf("%d claims: %d batches committed, %d refused, %d claims in them", len(names), committed, a.batches[batchRefused].Load(), batched)
	// 141 claims queued behind the held one: a full batch of 64, one of the next 64 but
	// the taken name (gathered with them, its node asked, then decided alone), and one of
	// the last 13.
	if committed != 3 || batched != 140 {
		t.Errorf("%d batches committed with %d claims; want 3 with 140", committed, batched)
	}
	// b learns of the batch through its watch, some time after a's claims were answered
	// (a loaded CI run once looked too early).
	waitFor(t, "b's watch to apply the batches (b's lookup of batch-new-99)", 10*time.Second, func() bool {
		return lookup(b, "batch-new-99") == conn(1, 199)
	})
}

// batchPair starts a cluster whose nodes have one claim worker each (holdWorker) and
// returns nodes 1 and 2's directories once node 2 writes claims in batches.
func batchPair(t *testing.T) (a, b *Directory) {
	t.Helper()
	tc := startClusterWith(t, func(c *Config) { c.ClaimWorkers = 1 })
	a, b = tc.node(0).Directory(), tc.node(1).Directory()
	waitFor(t, "the names stream to take atomic batches", 10*time.Second, b.batchOn.Load)
	return a, b
}

// TestClaimBatchHandover: claims of names that connections of another live node let go,
// their deletes not landed yet (a drained node's clients re-registering elsewhere), are
// batched as handovers once that node answers their release queries, all sent at once;
// a name it still holds is decided alone (NAME_TAKEN); its late deletes leave the new
// owners alone. Before, each handover was decided alone: a drained node's 15,833
// clients, re-registering on five nodes, waited p99 6.0–9.6 s for their names.
func TestClaimBatchHandover(t *testing.T) {
	a, b := batchPair(t)
	const n = 30
	var names []string
	var ids []shard.ConnID
	var owners []owner
	for i := range n {
		name := "handed-" + strconv.Itoa(i)
		if err := claim(t, a, name, conn(1, uint32(i+1))); err != nil {
			t.Fatal(err)
		}
		names, ids = append(names, name), append(ids, conn(2, uint32(i+1)))
		owners = append(owners, owner{id: conn(2, uint32(i+1)), epoch: b.epoch})
	}
	if err := claim(t, a, "handed-held", conn(1, 99)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to see a's names", 10*time.Second, func() bool {
		return lookup(b, names[n-1]) == conn(1, n) && lookup(b, "handed-held") == conn(1, 99)
	})
	a.holdDeletes.Store(true)
	for i, name := range names {
		if err := a.Unregister(name, conn(1, uint32(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	hand, committed, batched := b.handovers.Load(), b.batches[batchCommitted].Load(), b.batched.Load()
	got := claimQueued(t, b, append(names, "handed-held"), append(ids, conn(2, 99)), holdWorker(t, b, "handed-first", conn(2, 100)))
	for _, name := range names {
		if err := got[name]; err != nil {
			t.Errorf("%q (let go on a) = %v; want OK", name, err)
		}
	}
	if err := got["handed-held"]; !errors.Is(err, shard.ErrNameTaken) {
		t.Errorf("handed-held (a still holds it) = %v; want NAME_TAKEN", err)
	}
	checkEntries(t, b, names, owners)
	if h := b.handovers.Load() - hand; h != n {
		t.Errorf("handovers +%d; want +%d", h, n)
	}
	if c, k := b.batches[batchCommitted].Load()-committed, b.batched.Load()-batched; c != 1 || k != n {
		t.Errorf("%d batches committed with %d claims; want 1 with %d (every handover in one)", c, k, n)
	}
	// a's deletes, CAS on the revisions b replaced, fail: the names stay b's.
	tried := a.deletesTried.Load()
	a.holdDeletes.Store(false)
	a.uwake <- struct{}{}
	waitFor(t, "a's deletes to be tried", 10*time.Second, func() bool { return a.deletesTried.Load() >= tried+n })
	checkEntries(t, b, names, owners)
}

// TestClaimBatchAfterRemoval: names another node let go and deleted (their markers the
// last message of each) are claimed in one batch, each expecting its marker's revision,
// and alone by CAS on it. Written as creates, every batch holding one was refused and
// split down to single claims, 236–563 times a run in a whole node's drain.
func TestClaimBatchAfterRemoval(t *testing.T) {
	a, b := batchPair(t)
	const n = 20
	var names []string
	var ids []shard.ConnID
	var owners []owner
	for i := range n + 1 {
		name := "removed-" + strconv.Itoa(i)
		if err := claim(t, a, name, conn(1, uint32(i+1))); err != nil {
			t.Fatal(err)
		}
		if err := a.Unregister(name, conn(1, uint32(i+1))); err != nil {
			t.Fatal(err)
		}
		names, ids = append(names, name), append(ids, conn(2, uint32(i+1)))
		owners = append(owners, owner{id: conn(2, uint32(i+1)), epoch: b.epoch})
	}
	waitFor(t, "b to see the names removed", 10*time.Second, func() bool {
		for _, name := range names {
			if _, ok := b.removed.rev(name, time.Now()); !ok {
				return false
			}
		}
		return true
	})
	// One alone (no batch: nothing queued behind it), the rest queued together.
	refused, committed := b.batches[batchRefused].Load(), b.batches[batchCommitted].Load()
	if err := claim(t, b, names[n], ids[n]); err != nil {
		t.Fatalf("claim of %q (removed) alone = %v; want OK", names[n], err)
	}
	got := claimQueued(t, b, names[:n], ids[:n], holdWorker(t, b, "removed-first", conn(2, 100)))
	for _, name := range names[:n] {
		if err := got[name]; err != nil {
			t.Errorf("%q (removed) = %v; want OK", name, err)
		}
	}
	checkEntries(t, b, names, owners)
	if r, c := b.batches[batchRefused].Load()-refused, b.batches[batchCommitted].Load()-committed; r != 0 || c != 1 {
		t.Errorf("%d batches refused, %d committed; want 0 and 1", r, c)
	}
}

// TestClaimBatchRefused: a batch one of whose CAS fails (the cache was behind: a name
// another node took) is refused as a whole, split in halves down to single claims, and
// every other claim in it still lands.
func TestClaimBatchRefused(t *testing.T) {
	tc := startCluster(t)
	a, b := tc.node(0).Directory(), tc.node(1).Directory()
	waitFor(t, "the names stream to take atomic batches", 10*time.Second, a.batchOn.Load)
	if err := claim(t, b, "refused-taken", conn(2, 1)); err != nil {
		t.Fatal(err)
	}
	var items []batchItem
	var names []string
	var owners []owner
	for i := range 16 {
		name := fmt.Sprintf("refused-%d", i)
		r := claimReq{name: name, id: conn(1, uint32(i+1))}
		if i == 11 {
			// As if a's cache had not seen b's entry yet: a create, which fails.
			r.name = "refused-taken"
			items = append(items, batchItem{r: r, me: owner{id: r.id, epoch: a.epoch}, key: nameKey(r.name)})
			continue
		}
		it, how := a.batchable(r)
		if how != batchNow || it.rev != 0 {
			t.Fatalf("%q not batchable as a create: %+v, %v", name, it, how)
		}
		items = append(items, it)
		names, owners = append(names, name), append(owners, it.me)
	}
	refused, committed := a.batches[batchRefused].Load(), a.batches[batchCommitted].Load()
	a.writeBatch(items)
	for _, it := range items {
		want := error(nil)
		if it.r.name == "refused-taken" {
			want = shard.ErrNameTaken
		}
		if !errors.Is(it.err, want) || (want == nil) != (it.err == nil) {
			t.Errorf("%q = %v; want %v", it.r.name, it.err, want)
		}
	}
	checkEntries(t, a, names, owners)
	// 16 → 8+8 (the second refused) → 4+4 (the first refused) → 2+2 → single claims.
	if n := a.batches[batchRefused].Load() - refused; n != 4 {
		t.Errorf("%d batches refused; want 4 (16, 8, 4, 2: the halves holding the taken name)", n)
	}
	if n := a.batches[batchCommitted].Load() - committed; n != 3 {
		t.Errorf("%d batches committed; want 3 (8, 4, 2: the halves without it)", n)
	}
}

// TestClaimBatchUnanswered: a batch whose commit went unanswered may have landed. When it
// did, every claim in it is read back as the success it was; when it did not, each is
// UNAVAILABLE and in doubt (to be reconciled if it lands later), after one read.
func TestClaimBatchUnanswered(t *testing.T) {
	tc := startCluster(t)
	a := tc.node(0).Directory()
	waitFor(t, "the names stream to take atomic batches", 10*time.Second, a.batchOn.Load)
	items := func(prefix string) []batchItem {
		var items []batchItem
		for i := range 8 {
			it, how := a.batchable(claimReq{name: prefix + strconv.Itoa(i), id: conn(1, uint32(i+1))})
			if how != batchNow {
				t.Fatalf("%s%d not batchable", prefix, i)
			}
			items = append(items, it)
		}
		return items
	}
	var reads atomic.Int64
	getLast := a.getLast
	a.getLast = func(ctx context.Context, stream, subject string) ([]byte, uint64, msgState, error) {
		reads.Add(1)
		return getLast(ctx, stream, subject)
	}
	unanswered := a.batches[batchUnanswered].Load()

	// Landed: published, its answer lost.
	a.sendBatch = func(items []batchItem) (uint64, error) {
		if _, err := a.publishBatch(items); err != nil {
			t.Errorf("publishBatch: %v", err)
		}
		return 0, context.DeadlineExceeded
	}
	landed := items("unanswered-landed-")
	// Half of them as takeovers (of names held by a dead run): each counts as one once
	// its read-back shows that it landed.
	for i := range landed {
		landed[i].takeover = i%2 == 0
	}
	takeovers := a.takeovers.Load()
	a.writeBatch(landed)
	if n := a.takeovers.Load() - takeovers; n != int64(len(landed)/2) {
		t.Errorf("%d takeovers counted; want %d (the batch's takeovers, read back)", n, len(landed)/2)
	}
	var names []string
	var owners []owner
	for _, it := range landed {
		if it.err != nil {
			t.Errorf("%q (its batch landed) = %v; want OK", it.r.name, it.err)
		}
		names, owners = append(names, it.r.name), append(owners, it.me)
	}
	checkEntries(t, a, names, owners)
	if n := reads.Load(); n != int64(len(landed)) || a.doubtCount() != 0 {
		t.Errorf("%d reads, %d doubts; want %d reads (each claim read back) and none", n, a.doubtCount(), len(landed))
	}

	// Not landed: nothing published.
	reads.Store(0)
	a.sendBatch = func([]batchItem) (uint64, error) { return 0, context.DeadlineExceeded }
	lost := items("unanswered-lost-")
	for i := range lost {
		lost[i].takeover = i%2 == 0
	}
	takeovers = a.takeovers.Load()
	a.holdDoubts.Store(true) // the doubts stand until counted
	a.writeBatch(lost)
	if n := a.takeovers.Load() - takeovers; n != 0 {
		t.Errorf("%d takeovers counted for a batch that did not land; want 0", n)
	}
	for _, it := range lost {
		if !errors.Is(it.err, shard.ErrUnavailable) {
			t.Errorf("%q (its batch did not land) = %v; want UNAVAILABLE", it.r.name, it.err)
		}
	}
	if n := reads.Load(); n != 1 || a.doubtCount() != len(lost) {
		t.Errorf("%d reads, %d doubts; want 1 read (the first claim's) and %d doubts", n, a.doubtCount(), len(lost))
	}
	if n := a.batches[batchUnanswered].Load() - unanswered; n != 2 {
		t.Errorf("%d batches unanswered; want 2", n)
	}
}
