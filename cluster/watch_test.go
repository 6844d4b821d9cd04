package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/shard"
)

// fakeKV hands out the watchers a test scripted, one per WatchAll. Every other method
// of jetstream.KeyValue is nil and panics if called.
type fakeKV struct {
	jetstream.KeyValue
	mu       sync.Mutex
	watchers []*fakeWatcher // guarded by mu; the next WatchAll returns the first
	opened   int            // guarded by mu
	// the time left to the deadline of the last Status call's context; guarded by mu
	statusBudget time.Duration
}

func (kv *fakeKV) WatchAll(context.Context, ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	kv.mu.Lock()
	kv.opened++
	w := kv.watchers[0]
	if len(kv.watchers) > 1 {
		kv.watchers = kv.watchers[1:]
	}
	kv.mu.Unlock()
	if w.started != nil {
		<-w.started
	}
	if w.produce != nil {
		go w.run()
	}
	return w, nil
}

// Status records how long the caller gives it (the context's deadline) and fails.
func (kv *fakeKV) Status(ctx context.Context) (jetstream.KeyValueStatus, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		kv.statusBudget = time.Until(dl)
	}
	return nil, errors.New("no stream leader")
}

type fakeWatcher struct {
	ch       chan jetstream.KeyValueEntry
	started  chan struct{} // if not nil, WatchAll returns this watcher once it is closed
	stopped  chan struct{} // if not nil, Stop waits for it to close
	stopping atomic.Bool   // Stop was called
	// If not nil, sent on ch from the watch's start on, as nats.go's handler sends
	// (blocking while ch is full); Stop ends the sending after the send under way, and
	// ch is closed then, as nats.go closes it once the handler has returned.
	produce  []jetstream.KeyValueEntry
	halt     chan struct{} // closed by Stop, with produce
	produced chan struct{} // closed when the sending has ended
}

// producerOf returns a watcher that sends n entries from its start, on a channel of
// nats.go's size (256).
func producerOf(n int, entry func(uint64) jetstream.KeyValueEntry) *fakeWatcher {
	w := &fakeWatcher{ch: make(chan jetstream.KeyValueEntry, 256), halt: make(chan struct{}), produced: make(chan struct{})}
	for i := range n {
		w.produce = append(w.produce, entry(uint64(i+1)))
	}
	return w
}

func (w *fakeWatcher) run() {
	for _, e := range w.produce {
		select {
		case <-w.halt:
		default:
			w.ch <- e
			continue
		}
		break
	}
	<-w.halt
	close(w.produced) // before ch: whoever sees ch closed sees this
	close(w.ch)
}

func (w *fakeWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.ch }

// Stop closes the updates channel (once its sending has ended, with produce), as
// nats.go does once the subscription has ended.
func (w *fakeWatcher) Stop() error {
	if w.stopping.Swap(true) {
		return nil
	}
	if w.stopped != nil {
		<-w.stopped
	}
	if w.produce != nil {
		close(w.halt)
		return nil
	}
	close(w.ch)
	return nil
}

// watcherOf returns a watcher that delivers entries (nil: the end of the replay) and
// then stays silent, as a stalled watch does.
func watcherOf(entries ...jetstream.KeyValueEntry) *fakeWatcher {
	w := &fakeWatcher{ch: make(chan jetstream.KeyValueEntry, len(entries))}
	for _, e := range entries {
		w.ch <- e
	}
	return w
}

type fakeEntry struct {
	key     string
	val     []byte
	rev     uint64
	created time.Time // zero: unknown
}

func (e fakeEntry) Bucket() string                  { return "names" }
func (e fakeEntry) Key() string                     { return e.key }
func (e fakeEntry) Value() []byte                   { return e.val }
func (e fakeEntry) Revision() uint64                { return e.rev }
func (e fakeEntry) Created() time.Time              { return e.created }
func (e fakeEntry) Delta() uint64                   { return 0 }
func (e fakeEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

// TestWatchRestartsWhenStalled: a watch that stops delivering while the stream moves on
// is restarted within two checks, and the new watch's events are applied from the
// revision after the last one applied, each exactly once. The restart waits neither for
// the stalled watch's Stop nor for a new watch whose start hangs: while the node that
// holds a watch's consumer is stopped (SIGSTOP), nats.go waits 5 s for the deletion of
// that consumer, and for the creation of one placed there. In those cases the hanging
// call returns only after the test has ended, and a watch started that late is stopped.
func TestWatchRestartsWhenStalled(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		stopHangs, startHangs bool
	}{{"stop returns", false, false}, {"stop hangs", true, false}, {"start hangs", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(1)
			cfg.LeaseRenew = 20 * time.Millisecond // the check interval
			d := newDirectory(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			entry := func(rev uint64) jetstream.KeyValueEntry {
				o := owner{id: shard.MakeConnID(2, 0, uint32(rev), 1), epoch: 1}
				return fakeEntry{key: nameKey("n" + string(rune('0'+rev))), val: appendOwner(nil, o), rev: rev, created: time.Now()}
			}
			stalled := watcherOf(entry(1), entry(2), nil) // replays two, then stalls
			if tc.stopHangs {
				stalled.stopped = make(chan struct{})
			}
			// Started after it was given up on, it replays 1,000 entries nobody applies.
			late := producerOf(1000, entry)
			late.started = make(chan struct{})
			caughtUp := watcherOf(entry(2), entry(3), entry(4), entry(5))
			kv := &fakeKV{watchers: []*fakeWatcher{stalled, caughtUp}}
			wantRestarts := int64(1)
			if tc.startHangs {
				kv.watchers = []*fakeWatcher{stalled, late, caughtUp}
				wantRestarts = 2
			}
			var head atomic.Uint64
			head.Store(2)
			var mu sync.Mutex
			var applied []uint64
			synced := make(chan struct{})
			d.goWatch("names", kv, head.Load, func(e jetstream.KeyValueEntry) {
				mu.Lock()
				applied = append(applied, e.Revision())
				mu.Unlock()
			}, &d.namesDelay, synced)
			defer func() {
				if stalled.stopped != nil {
					close(stalled.stopped)
				}
				close(late.started)
				d.cancel()
				d.wg.Wait()
				if !tc.startHangs {
					return
				}
				if !late.stopping.Load() {
					t.Error("the watch that started after it was given up on was not stopped")
				}
				select { // its updates read, its handler returned: nothing blocked for ever
				case <-late.produced:
				default:
					t.Error("the late watch's sender is still blocked on its full channel")
				}
			}()
			select {
			case <-synced:
			case <-time.After(5 * time.Second):
				t.Fatal("the first replay never completed")
			}
			head.Store(5) // three writes the stalled watch does not deliver
			waitFor(t, "revision 5 applied", 5*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(applied) > 0 && applied[len(applied)-1] == 5
			})
			mu.Lock()
			got := append([]uint64(nil), applied...)
			mu.Unlock()
			if want := []uint64{1, 2, 3, 4, 5}; !slices.Equal(got, want) {
				t.Errorf("applied revisions %v; want %v", got, want)
			}
			if n := d.watchRestarts.Load(); n != wantRestarts {
				t.Errorf("%d watch restarts; want %d", n, wantRestarts)
			}
			if n := d.namesDelay.count(); n != 3 { // 3, 4 and 5: 1 and 2 were the replay
				t.Errorf("%d updates in the delay histogram; want the 3 live ones", n)
			}
			// Caught up: no further restart while the stream does not move.
			time.Sleep(5 * cfg.LeaseRenew)
			if n := d.watchRestarts.Load(); n != wantRestarts {
				t.Errorf("%d watch restarts after catching up; want %d", n, wantRestarts)
			}
		})
	}
}

// TestLateRenewalDoesNotRevive: a renewal of a run stored before this node took that run
// for dead, delivered by the watch only afterwards (a killed node's last renewal, in
// flight when its link closed), leaves it dead: TestProbeTakeover once saw the same run
// taken for dead twice, revived in between. A renewal stored afterwards revives it (a
// live node wrongly taken for dead), and so does one whose store time is unknown.
func TestLateRenewalDoesNotRevive(t *testing.T) {
	d := newDirectory(testConfig(1), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	const epoch = 7
	renewal := func(rev uint64, created time.Time) jetstream.KeyValueEntry {
		return fakeEntry{key: leaseKey(2), val: appendLease(nil, lease{epoch: epoch, addr: "127.0.0.1:1"}), rev: rev, created: created}
	}
	seen := func() time.Time {
		d.lmu.RLock()
		defer d.lmu.RUnlock()
		return d.liveNodes[2].seen
	}
	d.applyLease(renewal(1, time.Now()))
	before := time.Now() // stored before the mark-down, delivered after it
	if !d.markDown(2, epoch, seen(), "test") {
		t.Fatal("markDown did not take the run")
	}
	d.applyLease(renewal(2, before))
	if _, live := d.nodeEpoch(2); live {
		t.Fatal("a renewal stored before the mark-down revived the run")
	}
	if !d.markDown(2, epoch, seen(), "test") || d.nodesDown.Load() != 1 {
		t.Fatalf("taken for dead %d times; want once", d.nodesDown.Load())
	}
	d.applyLease(renewal(3, time.Now().Add(time.Millisecond)))
	if _, live := d.nodeEpoch(2); !live {
		t.Fatal("a renewal stored after the mark-down did not revive the run")
	}
	d.markDown(2, epoch, seen(), "test")
	d.applyLease(renewal(4, time.Time{}))
	if _, live := d.nodeEpoch(2); !live {
		t.Fatal("a renewal of unknown store time did not revive the run")
	}
}

// TestWatchDelayHistogram: delays land in the bucket of the first bound not below them,
// unknown store times are not counted, and the family is a well-formed cumulative
// Prometheus histogram per watch.
func TestWatchDelayHistogram(t *testing.T) {
	var names, leases durations
	now := time.Now()
	names.observe(now.Add(-500*time.Microsecond), now) // le 0.001
	names.observe(now.Add(-3*time.Second), now)        // le 5
	names.observe(now.Add(time.Second), now)           // the leader's clock ahead: 0
	names.observe(time.Time{}, now)                    // unknown: not counted
	leases.observe(now.Add(-time.Minute), now)         // +Inf
	var b strings.Builder
	writeDurations(&b, "d", "help", "watch", []string{"names", "leases"}, []*durations{&names, &leases})
	got := b.String()
	for _, want := range []string{
		"# TYPE d histogram\n",
		`d_bucket{watch="names",le="0.001"} 2` + "\n",
		`d_bucket{watch="names",le="2.5"} 2` + "\n",
		`d_bucket{watch="names",le="5"} 3` + "\n",
		`d_bucket{watch="names",le="+Inf"} 3` + "\n",
		`d_count{watch="names"} 3` + "\n",
		`d_sum{watch="names"} 3.0005` + "\n",
		`d_bucket{watch="leases",le="30"} 0` + "\n",
		`d_bucket{watch="leases",le="+Inf"} 1` + "\n",
		`d_count{watch="leases"} 1` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}

// count is the number of durations observed.
func (h *durations) count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// TestStreamLastBounded: the stall check's read of a stream's last revision, which runs
// on the watch's goroutine while updates wait, is given the claim read timeout, not
// OpTimeout: while a stream has no leader, or its leader's node is stopped, nobody answers
// it.
func TestStreamLastBounded(t *testing.T) {
	cfg := testConfig(1)
	cfg.ClaimReadTimeout = 700 * time.Millisecond
	d := newDirectory(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer d.cancel()
	kv := &fakeKV{}
	if got := d.streamLast(kv); got != 0 {
		t.Errorf("streamLast of a stream that does not answer = %d; want 0", got)
	}
	kv.mu.Lock()
	budget := kv.statusBudget
	kv.mu.Unlock()
	if budget <= 0 || budget > cfg.ClaimReadTimeout {
		t.Errorf("the read was given %v; want at most the claim read timeout %v (OpTimeout %v)", budget, cfg.ClaimReadTimeout, cfg.OpTimeout)
	}
}
