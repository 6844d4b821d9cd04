package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/shard"
)

func TestOwnerRoundTrip(t *testing.T) {
	for _, o := range []owner{
		{id: shard.MakeConnID(1, 0, 1, 1), epoch: 1},
		{id: shard.MakeConnID(65535, 255, shard.MaxSlots-1, 65535), epoch: 1<<64 - 1},
	} {
		b := appendOwner(nil, o)
		if got, ok := parseOwner(b); !ok || got != o {
			t.Errorf("parseOwner(appendOwner(%v)) = %v, %v; want it back", o, got, ok)
		}
	}
	good := appendOwner(nil, owner{id: shard.MakeConnID(3, 1, 2, 3), epoch: 9})
	bad := map[string][]byte{
		"empty":         nil,
		"short":         good[:entryLen-1],
		"long":          append(append([]byte(nil), good...), 0),
		"version":       append([]byte{2}, good[1:]...),
		"node mismatch": append(append([]byte{1}, 0, 4), good[3:]...),
	}
	for name, b := range bad {
		if _, ok := parseOwner(b); ok {
			t.Errorf("%s: parseOwner accepted %x", name, b)
		}
	}
}

func TestLeaseRoundTrip(t *testing.T) {
	for _, l := range []lease{
		{epoch: 42, addr: "10.0.0.1:7400"},
		{epoch: 43, addr: "10.0.0.2:7400", draining: true, load: 9_999, zone: 3},
		{epoch: 44},
	} {
		if got, ok := parseLease(appendLease(nil, l)); !ok || got != l {
			t.Errorf("parseLease = %v, %v; want %v", got, ok, l)
		}
	}
	// A version-1 lease (epoch and address) from an older node still parses.
	v1 := append(binary.BigEndian.AppendUint64([]byte{entryVersion}, 7), "10.0.0.9:7400"...)
	if got, ok := parseLease(v1); !ok || got != (lease{epoch: 7, addr: "10.0.0.9:7400"}) {
		t.Errorf("parseLease(v1) = %v, %v", got, ok)
	}
	if _, ok := parseLease([]byte{1, 2}); ok {
		t.Error("parseLease accepted a short value")
	}
}

func TestKeys(t *testing.T) {
	for _, name := range []string{"a", "svc.orders", "*", ">", "a b", "\x00\xff", strings.Repeat("x", shard.MaxNameLen)} {
		k := nameKey(name)
		if strings.ContainsAny(k, ".*> ") {
			t.Errorf("nameKey(%q) = %q: not a plain KV key", name, k)
		}
		if got, ok := keyName(k); !ok || got != name {
			t.Errorf("keyName(nameKey(%q)) = %q, %v", name, got, ok)
		}
	}
	if n, ok := keyNode(leaseKey(7)); !ok || n != 7 {
		t.Errorf("keyNode(leaseKey(7)) = %d, %v", n, ok)
	}
	for _, k := range []string{"node-0", "node-x", "node-65536", "7"} {
		if _, ok := keyNode(k); ok {
			t.Errorf("keyNode(%q) accepted it", k)
		}
	}
}

// TestCacheOrder: a change older than what the cache holds is ignored; this node's own
// unregister (a tombstone) is not undone by the watch replaying the put it removes; the
// removal seen by the watch clears the tombstone; the local count follows.
func TestCacheOrder(t *testing.T) {
	c := newCache(1)
	c.epoch.Store(5)
	mine := owner{id: shard.MakeConnID(1, 0, 1, 1), epoch: 5}
	theirs := owner{id: shard.MakeConnID(2, 0, 1, 1), epoch: 7}
	c.set("n", cached{owner: mine, rev: 10})
	if c.set("n", cached{owner: theirs, rev: 9}) {
		t.Fatal("an older change replaced a newer one")
	}
	if o, ok := c.lookup([]byte("n")); !ok || o != mine || c.local.Load() != 1 {
		t.Fatalf("lookup = %v, %v, local %d; want mine, 1", o, ok, c.local.Load())
	}
	c.set("n", cached{owner: mine, rev: 10, dead: true}) // Unregister
	if c.set("n", cached{owner: mine, rev: 10}) {
		t.Fatal("the watch replaying revision 10 undid the unregister")
	}
	if _, ok := c.lookup([]byte("n")); ok || c.local.Load() != 0 {
		t.Fatalf("unregistered name still found (local %d)", c.local.Load())
	}
	c.remove("n", 11) // the delete marker
	if _, ok := c.get("n"); ok {
		t.Fatal("tombstone kept after its delete came back")
	}
	c.set("n", cached{owner: theirs, rev: 12})
	c.remove("n", 11) // late, older removal
	if o, ok := c.lookup([]byte("n")); !ok || o != theirs || c.local.Load() != 0 {
		t.Fatalf("lookup = %v, %v, local %d; want theirs, 0", o, ok, c.local.Load())
	}
}

// TestCacheRemoveFirst: a removal is the first change a fresh cache sees (a node joining
// replays a name's removal marker before any put). CI's race run once panicked here:
// remove unpacked the missing entry's zero slot, an index into the still empty epoch
// table.
func TestCacheRemoveFirst(t *testing.T) {
	c := newCache(1)
	c.remove("gone", 7)
	if _, ok := c.get("gone"); ok || c.local.Load() != 0 {
		t.Fatalf("a removal of an unknown name left an entry (local %d)", c.local.Load())
	}
	c.set("n", cached{owner: owner{id: shard.MakeConnID(2, 0, 1, 1), epoch: 3}, rev: 8})
	if _, ok := c.lookup([]byte("n")); !ok {
		t.Fatal("a name set after the removal is not found")
	}
}

func TestLookupNoAllocs(t *testing.T) {
	d := newDirectory(testConfig(1), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer d.cancel()
	d.cache.set("svc", cached{owner: owner{id: shard.MakeConnID(2, 0, 1, 1), epoch: 1}, rev: 1})
	d.liveNodes[2] = lease{epoch: 1} // node 2's run that owns it is alive
	name := []byte("svc")
	if n := testing.AllocsPerRun(1000, func() {
		if _, ok := d.Lookup(name); !ok {
			panic("not found")
		}
	}); n != 0 {
		t.Errorf("Lookup allocates %v times; want 0", n)
	}
}

// TestLateFence: a node whose last renewal was sent the fence limit ago or more serves
// nothing although fenceLoop has not fenced it (a process stopped past its lease and just
// resumed: its event loops run before the fence timer's goroutine): Lookup finds none of
// the names its cache shows, Claim refuses even a name the connection holds, the claim
// workers refuse, and it is not ready. A moment before the limit it serves.
func TestLateFence(t *testing.T) {
	cfg := testConfig(1) // TTL 3 s, renew 300 ms: fence limit 2.5 s
	d := newDirectory(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer d.cancel()
	d.epoch = 5
	d.cache.epoch.Store(5)
	d.synced.Store(true)
	mine, other := shard.MakeConnID(1, 0, 1, 1), shard.MakeConnID(2, 0, 1, 1)
	d.cache.set("mine", cached{owner: owner{id: mine, epoch: 5}, rev: 1})
	d.cache.set("theirs", cached{owner: owner{id: other, epoch: 9}, rev: 2})
	d.liveNodes[2] = lease{epoch: 9}
	limit := cfg.LeaseTTL - d.fenceGuard()
	renewedAgo := func(ago time.Duration) { d.lastRenew.Store(d.sinceBase() - int64(ago)) }

	renewedAgo(limit - time.Second)
	for _, n := range []string{"mine", "theirs"} {
		if _, ok := d.Lookup([]byte(n)); !ok {
			t.Fatalf("Lookup(%s) before the limit: not found", n)
		}
	}
	if err := d.Claim("mine", mine, nil); err != nil {
		t.Fatalf("Claim(mine) before the limit = %v", err)
	}

	if !d.Serving() {
		t.Error("not serving before the limit")
	}

	renewedAgo(limit) // as after a stop: the fence timer has not run
	if d.Fenced() {
		t.Fatal("fenced without fenceLoop")
	}
	if d.Serving() {
		t.Error("serving past the fence limit")
	}
	for _, n := range []string{"mine", "theirs"} {
		if _, ok := d.Lookup([]byte(n)); ok {
			t.Errorf("Lookup(%s) past the fence limit found it", n)
		}
	}
	never := func(string, shard.ConnID, error) { t.Error("a claim was queued past the fence limit") }
	for _, n := range []string{"mine", "theirs", "new"} {
		if err := d.Claim(n, mine, never); !errors.Is(err, ErrFenced) || !errors.Is(err, shard.ErrUnavailable) {
			t.Errorf("Claim(%s) past the fence limit = %v; want ErrFenced (UNAVAILABLE)", n, err)
		}
	}
	if err := d.decide("new", mine); !errors.Is(err, ErrFenced) {
		t.Errorf("decide past the fence limit = %v; want ErrFenced", err)
	}
	if ok, why := d.Ready(); ok {
		t.Errorf("Ready past the fence limit = true %q", why)
	}
	if n := testing.AllocsPerRun(1000, func() { d.Lookup([]byte("mine")) }); n != 0 {
		t.Errorf("Lookup past the fence limit allocates %v times; want 0", n)
	}
}

// TestClaimWithoutNetwork covers what Claim decides on the caller's goroutine: bad
// names, names the cache answers, and the bounded queue (ErrBusy when full).
func TestClaimWithoutNetwork(t *testing.T) {
	cfg := testConfig(1)
	cfg.ClaimQueue = 3
	d := newDirectory(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer d.cancel()
	d.epoch = 5
	d.cache.epoch.Store(5)
	a, b := shard.MakeConnID(1, 0, 1, 1), shard.MakeConnID(1, 0, 2, 1)
	other := shard.MakeConnID(2, 0, 1, 1)
	d.cache.set("mine", cached{owner: owner{id: a, epoch: 5}, rev: 1})
	d.cache.set("remote", cached{owner: owner{id: other, epoch: 9}, rev: 2})
	d.cache.set("stale", cached{owner: owner{id: other, epoch: 8}, rev: 3})
	d.liveNodes[2] = lease{epoch: 9}
	never := func(string, shard.ConnID, error) { t.Error("done called for a claim decided at once") }
	tests := []struct {
		name string
		id   shard.ConnID
		want error
	}{
		{"", a, shard.ErrBadName},
		{strings.Repeat("x", shard.MaxNameLen+1), a, shard.ErrBadName},
		{"mine", a, nil},
		{"mine", b, shard.ErrNameTaken},
		{"remote", a, shard.ErrPending}, // another live node's: the worker probes it (probe.go)
		{"stale", a, shard.ErrPending},  // its node's lease is of another epoch: ask the KV
		{"new", a, shard.ErrPending},
		{"newer", a, shard.ErrBusy}, // the queue holds 3
	}
	for _, tt := range tests {
		if err := d.Claim(tt.name, tt.id, never); !errors.Is(err, tt.want) {
			t.Errorf("Claim(%.10q, %v) = %v; want %v", tt.name, tt.id, err, tt.want)
		}
	}
	if err := d.Unregister("mine", b); !errors.Is(err, shard.ErrNotOwner) {
		t.Errorf("Unregister by another connection = %v; want ErrNotOwner", err)
	}
	if err := d.Unregister("mine", a); err != nil {
		t.Errorf("Unregister = %v", err)
	}
	if _, ok := d.Lookup([]byte("mine")); ok {
		t.Error("an unregistered name is still found")
	}
	if err := d.Unregister("mine", a); !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("second Unregister = %v; want ErrNotFound", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Errorf("off: %v", err)
	}
	c.Mode, c.NodeID = ModeExternal, 0
	c.LeaseRenew = c.LeaseTTL
	c.ClaimReadTimeout = 0
	err := c.Validate()
	for _, want := range []string{"NodeID", "URL", "LeaseRenew", "ClaimReadTimeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want a problem naming %s", err, want)
		}
	}
	// Without JetStream a node needs routes to the nodes that have it.
	c = DefaultConfig()
	c.Mode, c.NodeID, c.Replicas, c.JetStream = ModeEmbedded, 1, 1, false
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("embedded, no JetStream, no routes: Validate() = %v; want a problem naming JetStream", err)
	}
	c.Routes = "127.0.0.1:7402"
	if err := c.Validate(); err != nil {
		t.Errorf("embedded, no JetStream, with routes: Validate() = %v; want nil", err)
	}
}

// TestCacheSlot: an entry comes back from the cache as it was set (owner, epoch,
// revision, tombstone), and past the epoch table's capacity a new epoch matches no run.
func TestCacheSlot(t *testing.T) {
	c := newCache(1)
	for _, e := range []cached{
		{owner: owner{id: shard.MakeConnID(2, 1, 7, 3), epoch: 1<<64 - 1}, rev: maxSlotRev},
		{owner: owner{id: shard.MakeConnID(3, 0, 1, 1), epoch: 42}, rev: 1, dead: true},
		{owner: owner{id: shard.MakeConnID(2, 0, 9, 1), epoch: 1<<64 - 1}, rev: 5},
	} {
		c.set("n", cached{}) // a fresh entry each time: rev 0 loses to nothing
		c.remove("n", maxSlotRev)
		c.set("n", e)
		if got, ok := c.get("n"); !ok || got != e {
			t.Errorf("get after set(%+v) = %+v, %v", e, got, ok)
		}
	}
	if n := len(*c.epochs.Load()); n != 3 { // the zero epoch of cached{} and the two above
		t.Errorf("%d epochs interned; want 3", n)
	}
	full := make([]uint64, epochUnknown) // the table full
	c.epochs.Store(&full)
	c.set("late", cached{owner: owner{id: shard.MakeConnID(2, 0, 1, 1), epoch: 7}, rev: 3})
	if got, ok := c.get("late"); !ok || got.epoch != 0 || got.id != shard.MakeConnID(2, 0, 1, 1) || got.rev != 3 {
		t.Errorf("entry of an epoch past the table = %+v, %v; want epoch 0 (none), id and rev kept", got, ok)
	}
}

// BenchmarkCacheMemory reports the heap the cache holds per name at 100,000 names (names
// like bench connect's), as bytes/name.
func BenchmarkCacheMemory(b *testing.B) {
	const names = 100_000
	keys := make([]string, names)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench-%d-%d", 12345, i)
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := newCache(1)
		for i, k := range keys {
			// the watch's copy of the name, as keyName makes it
			c.set(string([]byte(k)), cached{owner: owner{id: shard.MakeConnID(uint16(2+i%5), 0, uint32(i), 1), epoch: uint64(100 + i%5)}, rev: uint64(i + 1)})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/names, "bytes/name")
		runtime.KeepAlive(c)
	}
}

// BenchmarkLookup is Lookup of another node's name, as a SEND on an event loop does it
// (the fence check included: fence.go's leaseStale).
func BenchmarkLookup(b *testing.B) {
	d := newDirectory(testConfig(1), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer d.cancel()
	d.cache.set("svc", cached{owner: owner{id: shard.MakeConnID(2, 0, 1, 1), epoch: 1}, rev: 1})
	d.liveNodes[2] = lease{epoch: 1}
	name := []byte("svc")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := d.Lookup(name); !ok {
			b.Fatal("not found")
		}
	}
}

// TestClaimFailuresAreUnavailable: every way this package fails a claim that another node
// (or a later try) could decide is UNAVAILABLE to the client (shard.ErrUnavailable, which
// the server answers with a retry-after), not INTERNAL: a node shutting down, one whose
// lease another run took, one fenced or cut off, an owner's node unanswered, and a claim
// whose NATS call failed as the directory closed.
func TestClaimFailuresAreUnavailable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	closing := (&Directory{ctx: ctx}).decided("n", owner{}, false, errors.New("nats: connection closed"))
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"closed", ErrClosed},
		{"lease lost", errClaimLeaseLost},
		{"fenced", ErrFenced},
		{"isolated", ErrIsolated},
		{"owner's node unanswered", errOwnerUnanswered},
		{"NATS call failed while closing", closing},
	} {
		if !errors.Is(tc.err, shard.ErrUnavailable) {
			t.Errorf("%s: %v does not wrap shard.ErrUnavailable", tc.name, tc.err)
		}
	}
	if !errors.Is(errClaimLeaseLost, ErrLeaseLost) || !errors.Is(closing, ErrClosed) {
		t.Errorf("the wrapped errors lost their identity: %v, %v", errClaimLeaseLost, closing)
	}
}

// TestUnregisterQueueOnePerName: a client that registers and unregisters one name over
// and over queues one KV delete for it, the latest (an earlier one's CAS could only fail):
// the queue holds at most one entry per name this node owned. It used to take one entry
// per UNREGISTER, drained one KV round trip at a time: 28K after 8 s of 32 names cycling.
func TestUnregisterQueueOnePerName(t *testing.T) {
	d := newDirectory(testConfig(1), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer d.cancel()
	id := conn(1, 1)
	for rev := uint64(1); rev <= 1000; rev++ {
		d.cache.set("cycled", cached{owner: owner{id: id, epoch: d.epoch}, rev: rev})
		if err := d.Unregister("cycled", id); err != nil {
			t.Fatalf("Unregister at rev %d: %v", rev, err)
		}
	}
	d.queueDelete("cycled", 5) // a failed delete put back after a later one was queued
	d.umu.Lock()
	defer d.umu.Unlock()
	if len(d.unregs) != 1 || d.unregs["cycled"] != 1000 {
		t.Fatalf("queued deletes %v; want one, at the latest revision 1000", d.unregs)
	}
}
