package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Entries of runs gone for good.
//
// A run's names leave the KV by its own deletes (unregisters, a drain's flush), by the
// start-up sweep of the next run of its node id (sweep), or one by one as clients claim
// them again elsewhere. A node that leaves and does not come back under its id (scaled
// down; killed and replaced by a node of another id; a drain whose deletes had not all
// landed when it stopped: 1,119 and 1,613 of a whole node's 15,833 in two drains
// measured on 2026-12-04) leaves the rest for ever: entries nobody claims again,
// on the JetStream nodes' disks and in every node's cache. Nothing routes to them (their
// run is gone), but they grow with every such node.
//
// So one node, the sweeper (the live node with the lowest id that is neither draining nor
// taken for dead), scans its cache every goneSweepEvery for entries of other nodes' runs
// that hold no lease (the node's lease is gone, or carries another epoch), and deletes
// those whose run was already gone at its previous scan, after one read of the node's
// lease from the leader confirms it: the leases watch may lag. Each delete is a CAS on
// the entry's revision, as sweep's: a client claiming the name meanwhile wins, or its
// claim's CAS fails and it creates the name anew. At most goneSweepMax deletes a scan, so
// a large node's leftovers are spread over a few minutes.

const (
	goneSweepEvery = time.Minute
	goneSweepMax   = 10_000
)

// run is one run of a node: its id and epoch.
type run struct {
	node  uint16
	epoch uint64
}

func (d *Directory) goneSweepLoop() {
	defer d.wg.Done()
	every := d.cfg.goneSweepEvery
	if every == 0 {
		every = goneSweepEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	seen := make(map[run]bool) // runs found gone at earlier scans
	for {
		select {
		case <-t.C:
		case <-d.ctx.Done():
			return
		}
		d.sweepGone(seen)
	}
}

// sweepGone is one scan (goneSweepLoop). seen holds the runs found gone at earlier scans;
// runs found live or referenced by no entry any more are forgotten.
func (d *Directory) sweepGone(seen map[run]bool) {
	if d.claimGate() != nil || !d.synced.Load() || !d.sweeper() {
		clear(seen) // judged afresh when this node sweeps again
		return
	}
	live := make(map[uint16]uint64)
	d.lmu.RLock()
	for node, l := range d.liveNodes {
		live[node] = l.epoch // a run taken for dead by probe keeps its lease: left to it
	}
	d.lmu.RUnlock()
	type doomed struct {
		name string
		rev  uint64
		run  run
	}
	var due []doomed
	found := make(map[run]bool)
	d.cache.each(func(name string, e cached) {
		r := run{node: e.node(), epoch: e.epoch}
		if r.node == d.cfg.NodeID {
			return // this node's earlier runs: sweep, at start
		}
		if ep, ok := live[r.node]; ok && ep == r.epoch {
			return
		}
		found[r] = true
		if !seen[r] {
			seen[r] = true
			return
		}
		if len(due) < goneSweepMax { // gone at the previous scan too
			due = append(due, doomed{name: name, rev: e.rev, run: r})
		}
	})
	for r := range seen {
		if !found[r] {
			delete(seen, r)
		}
	}
	var n int64
	confirmed := make(map[run]bool)
	for _, x := range due {
		if d.ctx.Err() != nil || d.claimGate() != nil {
			break
		}
		gone, ok := confirmed[x.run]
		if !ok {
			gone = d.runGone(x.run)
			confirmed[x.run] = gone
		}
		if !gone {
			delete(seen, x.run)
			continue
		}
		ctx, cancel := context.WithTimeout(d.ctx, d.cfg.OpTimeout)
		err := d.deleteName(ctx, nameKey(x.name), x.rev)
		cancel()
		switch {
		case err == nil:
			n++
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			// claimed (or removed) since the scan
		default:
			d.log.Warn("sweeping names of nodes gone for good: a delete failed; the rest waits for the next scan",
				"name", x.name, "node", x.run.node, "err", err)
			d.sweptGone.Add(n)
			return
		}
	}
	d.sweptGone.Add(n)
	if n > 0 {
		d.log.Info("swept names of nodes gone for good", "count", n, "runs", len(confirmed))
	}
}

// sweeper reports whether this node sweeps the entries of gone runs: it is not draining
// (as its own lease, seen by the leases watch, says), and no live node with a lower id
// is neither draining nor taken for dead.
func (d *Directory) sweeper() bool {
	d.lmu.RLock()
	defer d.lmu.RUnlock()
	for node, l := range d.liveNodes {
		switch {
		case node == d.cfg.NodeID && l.draining:
			return false
		case node < d.cfg.NodeID && !l.down && !l.draining:
			return false
		}
	}
	return true
}

// runGone reads r's node's lease from the leader: r is gone if the node has no lease, or
// one of another run. A failed read is not evidence: false.
func (d *Directory) runGone(r run) bool {
	data, _, st, err := d.readLeader(d.ctx, d.leasesBucket, leaseKey(r.node))
	switch {
	case err != nil:
		return false
	case st != msgPresent:
		return true
	}
	l, ok := parseLease(data)
	return ok && l.epoch != r.epoch
}
