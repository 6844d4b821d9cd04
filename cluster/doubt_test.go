package cluster

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/shard"
)

// startOne starts a one-node embedded cluster (one replica) with a short operation
// timeout, and closes it when the test ends.
func startOne(t *testing.T) *Node {
	t.Helper()
	return startOneWith(t, func(*Config) {})
}

// startOneWith is startOne with its configuration changed by set.
func startOneWith(t *testing.T, set func(*Config)) *Node {
	t.Helper()
	c := testConfig(1)
	c.Replicas = 1
	c.Listen = "127.0.0.1:0"
	c.StoreDir = t.TempDir()
	c.OpTimeout = 250 * time.Millisecond
	set(&c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := Start(ctx, c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

// entryOf reads name's owner from the KV leader; ok is false when there is none.
func entryOf(t *testing.T, d *Directory, name string) (owner, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	data, _, st, err := lastMsg(ctx, d.nc, streamOf(d.namesBucket), subjectOf(d.namesBucket, nameKey(name)))
	if err != nil {
		t.Fatalf("read %q: %v", name, err)
	}
	if st != msgPresent {
		return owner{}, false
	}
	o, ok := parseOwner(data)
	if !ok {
		t.Fatalf("%q: unparsable entry %q", name, data)
	}
	return o, true
}

// TestReconcileDoubtfulClaims checks what happens to a claim the server was told failed
// (UNAVAILABLE) although NATS may have applied its write: an entry that landed is
// deleted, and nothing else is touched — another owner's entry, an absent name, and a
// name the same connection has claimed again successfully since.
func TestReconcileDoubtfulClaims(t *testing.T) {
	n := startOne(t)
	d := n.Directory()
	me := func(slot uint32) owner { return owner{id: conn(1, slot), epoch: d.epoch} }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	put := func(name string, o owner) {
		if _, err := d.names.Create(ctx, nameKey(name), appendOwner(nil, o)); err != nil {
			t.Fatalf("create %q: %v", name, err)
		}
	}

	// Landed: the write went through, the server was told it failed.
	put("landed", me(1))
	// Another owner's: the doubtful write did not land, someone else's did.
	other := owner{id: conn(2, 7), epoch: 99}
	put("other", other)
	// Claimed again: the same connection retried after UNAVAILABLE and succeeded.
	put("again", me(3))
	// Two connections of this node in doubt over one name; the first one's write landed.
	put("two", me(5))

	// The doubts stand until "again" has been claimed again: reconciling it first (also
	// correct: the entry goes, the claim writes it anew) is another case than this one's.
	d.holdDoubts.Store(true)
	d.doubtClaim("landed", me(1))
	d.doubtClaim("other", me(2))
	d.doubtClaim("absent", me(4))
	d.doubtClaim("again", me(3))
	d.doubtClaim("two", me(5))
	d.doubtClaim("two", me(6))
	if err := claim(t, d, "again", conn(1, 3)); err != nil {
		t.Fatalf("claim again: %v", err)
	}
	d.holdDoubts.Store(false)

	waitFor(t, "doubts settled", 10*time.Second, func() bool { return d.doubtCount() == 0 })
	if o, ok := entryOf(t, d, "landed"); ok {
		t.Errorf("landed: entry %v left; want it deleted", o)
	}
	if o, ok := entryOf(t, d, "other"); !ok || o != other {
		t.Errorf("other: entry %v, %v; want %v kept", o, ok, other)
	}
	if o, ok := entryOf(t, d, "absent"); ok {
		t.Errorf("absent: entry %v appeared", o)
	}
	if o, ok := entryOf(t, d, "again"); !ok || o != me(3) {
		t.Errorf("again: entry %v, %v; want the successful claim's %v kept", o, ok, me(3))
	}
	if o, ok := entryOf(t, d, "two"); ok {
		t.Errorf("two: entry %v left; want the first connection's landed entry deleted", o)
	}
	if got := d.reconciled.Load(); got != 2 {
		t.Errorf("reconciled %d; want 2 (landed, two)", got)
	}
	waitFor(t, "the cache to follow the delete", 5*time.Second, func() bool { return lookup(d, "landed") == 0 })
	if got := lookup(d, "again"); got != conn(1, 3) {
		t.Errorf("lookup again = %v; want %v", got, conn(1, 3))
	}
	// A name whose doubtful entry is gone can be claimed by another connection.
	if err := claim(t, d, "landed", conn(1, 9)); err != nil {
		t.Errorf("claim of the reconciled name by another connection: %v", err)
	}
}

// TestDoubtsBounded checks that the doubts kept are bounded.
func TestDoubtsBounded(t *testing.T) {
	d := newDirectory(testConfig(1), testLogger(t), nil)
	for i := range maxDoubts + 10 {
		d.doubtClaim(strconv.Itoa(i), owner{id: shard.ConnID(i)})
	}
	if got := d.doubtCount(); got != maxDoubts {
		t.Errorf("%d doubts; want the bound %d", got, maxDoubts)
	}
	if got := d.doubtsDropped.Load(); got != 10 {
		t.Errorf("%d dropped; want 10", got)
	}
}
