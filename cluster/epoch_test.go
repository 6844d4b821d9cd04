package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/shard"
)

// TestLookupEarlierRuns: Lookup does not route to an owner of an earlier run of its node
// (connection ids restart with a run), nor to a node without a lease.
func TestLookupEarlierRuns(t *testing.T) {
	d := newDirectory(testConfig(1), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer d.cancel()
	d.epoch = 7
	d.cache.epoch.Store(7)
	d.liveNodes[2] = lease{epoch: 20}
	id1, id2 := shard.MakeConnID(1, 0, 1, 1), shard.MakeConnID(2, 0, 1, 1)
	for i, tc := range []struct {
		name  string
		owner owner
		found bool
	}{
		{"mine-now", owner{id: id1, epoch: 7}, true},
		{"mine-earlier-run", owner{id: id1, epoch: 6}, false},
		{"theirs-live", owner{id: id2, epoch: 20}, true},
		{"theirs-earlier-run", owner{id: id2, epoch: 19}, false},
		{"no-lease", owner{id: shard.MakeConnID(3, 0, 1, 1), epoch: 30}, false},
	} {
		d.cache.set(tc.name, cached{owner: tc.owner, rev: uint64(i + 1)})
		got, ok := d.Lookup([]byte(tc.name))
		if ok != tc.found || ok && got != tc.owner.id {
			t.Errorf("%s: Lookup = %v, %v; want %v, %v", tc.name, got, ok, tc.owner.id, tc.found)
		}
	}
}

// TestBatchEpochs: a node hands its handler the records of a batch stamped with its own
// epoch, in order, and drops those stamped for an earlier run.
func TestBatchEpochs(t *testing.T) {
	f := &Forwarder{epoch: 5, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var got []string
	f.SetHandler(func(rec []byte) { got = append(got, string(rec)) })
	batch := []byte{batchVersion}
	for _, r := range []struct {
		epoch uint64
		rec   string
	}{{5, "a"}, {4, "stale"}, {5, "b"}, {5, ""}, {6, "future"}} {
		batch = binary.BigEndian.AppendUint32(batch, uint32(len(r.rec)))
		batch = binary.BigEndian.AppendUint64(batch, r.epoch)
		batch = append(batch, r.rec...)
	}
	f.onBatch(&nats.Msg{Data: append(batch, 0, 0)}) // a truncated tail is dropped
	if want := []string{"a", "b", ""}; !slices.Equal(got, want) {
		t.Errorf("handled %q; want %q", got, want)
	}
	if st := f.Stats(); st.Received != 3 || st.Stale != 2 {
		t.Errorf("received %d, stale %d; want 3, 2", st.Received, st.Stale)
	}
}

// TestForwardNoAllocs: queueing a record for another node, what an event loop does for
// every forwarded frame, allocates nothing once the queue's buffer has grown; a full
// queue refuses with shard.ErrBusy, a node without a lease with ErrNodeDown.
func TestForwardNoAllocs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &Forwarder{
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), node: 1, prefix: "test.node.",
		maxBytes: 1 << 20, dests: make(map[uint16]*dest), ctx: ctx, cancel: cancel,
		epochOf: func(n uint16) (uint64, bool) { return 9, n == 2 },
	}
	f.maxQueue.Store(1000)
	f.hold(true) // the drainer never publishes (there is no NATS connection)
	defer func() { cancel(); f.wg.Wait() }()
	rec := make([]byte, 100)
	d, _ := f.dest(2)
	reset := func() {
		d.mu.Lock()
		d.buf, d.n = d.buf[:0], 0
		d.mu.Unlock()
	}
	step := func() {
		if err := f.Forward(2, rec); err != nil {
			t.Fatal(err)
		}
		reset()
	}
	step()
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("Forward allocates %v times; want 0", n)
	}
	f.maxQueue.Store(2)
	for i, want := range []error{nil, nil, shard.ErrBusy} {
		if err := f.Forward(2, rec); !errors.Is(err, want) {
			t.Errorf("Forward %d into a queue of 2 = %v; want %v", i, err, want)
		}
	}
	if err := f.Forward(3, rec); !errors.Is(err, ErrNodeDown) {
		t.Errorf("Forward to a node without a lease = %v; want ErrNodeDown", err)
	}
	if err := f.Forward(2, make([]byte, f.MaxRecord()+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Forward of MaxRecord+1 bytes = %v; want ErrTooLarge", err)
	}
}
