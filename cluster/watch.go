package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// goWatch runs a supervised watch of kv on a tracked goroutine, feeding apply every
// change in revision order; synced (if not nil) is closed when the first replay of the
// bucket is complete. A watch can stall (nats.go#1094: more than 20 s once when the
// stream leader was killed), so the supervisor compares the stream's last revision with
// the last one applied every LeaseRenew and, when the watch has fallen behind and not
// moved for two checks, or its channel closed, starts a new one from the revision after
// the last applied.
//
// head returns the stream's last revision (0 when it cannot be read now): streamLast,
// or a test's. delay records how stale each update is when applied, from the end of the
// first replay on (a restarted watch's backlog included: that is what a stall costs).
func (d *Directory) goWatch(what string, kv jetstream.KeyValue, head func() uint64, apply func(jetstream.KeyValueEntry), delay *durations, synced chan struct{}) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		var last uint64   // last revision applied
		caughtUp := false // the first replay is complete: later updates count in delay
		var wait time.Duration
		for first := true; d.ctx.Err() == nil; first = false {
			if !first {
				d.watchRestarts.Add(1)
				d.log.Warn("restarting a stalled or closed watch", "watch", what, "from_revision", last+1)
			}
			if d.cfg.watchStart != nil {
				d.cfg.watchStart(what)
			}
			var started bool
			last, started = d.watchOnce(kv, head, last, wait, apply, delay, &caughtUp, &synced)
			// How long the next start may take (startWatch): the first one is not bounded
			// here (a node starting, its JetStream perhaps not ready yet; nats.go's own 5 s
			// applies); a restart, the claim read timeout, doubled after each start that
			// failed, up to OpTimeout.
			switch {
			case started || wait == 0:
				wait = d.readTimeout()
			default:
				wait = min(2*wait, d.cfg.OpTimeout)
			}
			select {
			case <-d.ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// watchOnce runs one watch from revision last+1 until it closes, stalls or the directory
// stops, and returns the last revision applied and whether the watch started. Starting
// it (creating its consumer) may take at most wait if not 0.
func (d *Directory) watchOnce(kv jetstream.KeyValue, head func() uint64, last uint64, wait time.Duration, apply func(jetstream.KeyValueEntry), delay *durations, caughtUp *bool, synced *chan struct{}) (uint64, bool) {
	var opts []jetstream.WatchOpt
	if last > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(last+1))
	}
	// The stream's last revision when the watch starts. Once the watch says its replay is
	// complete, a revision up to floor it did not deliver was removed (an expired lease,
	// its marker gone), so the stall check must not wait for it.
	floor := head()
	replayed := false
	w, err := d.startWatch(kv, wait, opts)
	if err != nil {
		return last, false
	}
	defer d.retire(w)
	check := time.NewTicker(d.cfg.LeaseRenew)
	defer check.Stop()
	behind := 0
	checked := last
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return last, true
			}
			if e == nil {
				replayed, *caughtUp = true, true
				if *synced != nil {
					close(*synced)
					*synced = nil
				}
				continue
			}
			if e.Revision() <= last {
				continue
			}
			apply(e)
			last = e.Revision()
			if *caughtUp { // the first replay's entries were stored before the node began
				delay.observe(e.Created(), time.Now())
			}
		case <-check.C:
			mark := last
			if replayed {
				mark = max(last, floor)
			}
			if head() > mark && last == checked {
				if behind++; behind >= 2 {
					return last, true
				}
			} else {
				behind = 0
			}
			checked = last
		case <-d.ctx.Done():
			return last, true
		}
	}
}

// errWatchStartSlow: a watch's start (startWatch) took longer than it may.
var errWatchStartSlow = errors.New("cluster: the watch's consumer was not created in time")

// startWatch starts a watch of kv, waiting at most wait for it (if not 0). Creating the
// watch's consumer is a request to the server the consumer is placed on, which the meta
// leader picks among the stream's peers; a stopped node (SIGSTOP) is still a peer for
// seconds and never answers, and nats.go waits 5 s. A start given up on is left to
// finish on a tracked goroutine, which retires the watch if it started after all.
func (d *Directory) startWatch(kv jetstream.KeyValue, wait time.Duration, opts []jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	if wait == 0 {
		return kv.WatchAll(d.ctx, opts...)
	}
	type started struct {
		w   jetstream.KeyWatcher
		err error
	}
	ch := make(chan started, 1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		w, err := kv.WatchAll(d.ctx, opts...)
		ch <- started{w, err}
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.w, r.err
	case <-t.C:
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if r := <-ch; r.err == nil {
			d.retire(r.w)
		}
	}()
	return nil, errWatchStartSlow
}

// retire stops w, a watch nobody reads any more, on tracked goroutines, so that the next
// watch starts at once. Stopping a watch deletes its consumer, a request that the
// consumer's server answers: one on a stopped node (SIGSTOP) never does, and nats.go
// waits 5 s for it. Waiting for that, TestClusterSigstop reached the names moved off the
// stopped node ~6 s late in about a third of its runs: node 1's names watch, its
// consumer on that node, had stalled, and its restart waited the 5 s. And w's updates
// are read until nats.go closes their channel (once the subscription has ended): its
// handler blocks while the channel is full (256), and would keep that goroutine for
// ever. The connection's close (after stop, before wait) ends a stop still waiting.
func (d *Directory) retire(w jetstream.KeyWatcher) {
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		_ = w.Stop()
	}()
	go func() {
		defer d.wg.Done()
		for range w.Updates() {
		}
	}()
}

// streamLast is the last revision in kv's stream, 0 if it cannot be read now. The
// stream's leader answers; while it has none, or it is on a stopped node, nobody does.
// The watch's own goroutine asks (before a start, and at every check, while updates
// wait), so the read is bounded like a claim's (the claim read timeout), not by
// OpTimeout.
func (d *Directory) streamLast(kv jetstream.KeyValue) uint64 {
	ctx, cancel := context.WithTimeout(d.ctx, d.readTimeout())
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return 0
	}
	if s, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		return s.StreamInfo().State.LastSeq
	}
	return 0
}

func (d *Directory) applyName(e jetstream.KeyValueEntry) {
	name, ok := keyName(e.Key())
	if !ok {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		d.cache.remove(name, e.Revision())
		// Remembered from when the marker was written, not delivered: a watch replaying
		// the bucket (a restart) delivers markers up to their TTL old, which may expire
		// long before removedKeep from now.
		now := time.Now()
		at := now
		if c := e.Created(); !c.IsZero() && c.Before(now) {
			at = c
		}
		d.removed.add(name, e.Revision(), at, now)
		return
	}
	o, ok := parseOwner(e.Value())
	if !ok {
		d.log.Warn("ignoring a name entry of an unknown format", "name", name, "revision", e.Revision())
		return
	}
	d.cache.set(name, cached{owner: o, rev: e.Revision()})
	d.removed.written(name, e.Revision())
}

func (d *Directory) applyLease(e jetstream.KeyValueEntry) {
	node, ok := keyNode(e.Key())
	if !ok {
		return
	}
	d.lmu.Lock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(d.liveNodes, node)
	} else if l, ok := parseLease(e.Value()); ok {
		prev, known := d.liveNodes[node]
		if known && prev.down && prev.epoch == l.epoch && !e.Created().IsZero() && e.Created().Before(prev.downAt) {
			// A renewal the run wrote before this node took it for dead, delivered only
			// now (the watch lags; a killed node's last renewal is often in flight when
			// its link closes): no sign of life. Reviving it would take it for dead a
			// second time at its next probe, and route to it meanwhile. Created is the
			// stream leader's clock, ours is downAt: skew between them shifts only which
			// renewal counts as the first sign of life.
			d.lmu.Unlock()
			return
		}
		l.seen = time.Now() // a renewal: the node is not down (any more)
		d.liveNodes[node] = l
		delete(d.unansweredAt, node)
		if !known || prev.epoch != l.epoch || prev.down {
			select { // a run not linked yet (link.go)
			case d.linkDial <- struct{}{}:
			default:
			}
		}
	}
	d.lmu.Unlock()
	d.publishPeers()
}
