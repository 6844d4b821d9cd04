package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// acquireLease takes this node's key in the leases bucket with a new epoch. A key held by
// another run of this node id is taken only once it has stopped being renewed: it is
// watched for holdCheck (a third of the TTL, at least two renewal periods), and a
// renewal seen meanwhile means a live node has this id (ErrNodeIDInUse). So a node
// restarted after a crash waits that long (5 s by default); after a clean stop (which
// deletes the lease) it does not wait. The window is wider than two renewals so that a
// live holder whose renewals are slow for a moment (a loaded host, a KV hiccup) is not
// taken for dead.
func (d *Directory) acquireLease(ctx context.Context) error {
	key := leaseKey(d.cfg.NodeID)
	for attempt := 0; ; attempt++ {
		data, rev, st, err := d.readLease(ctx)
		if err != nil {
			return fmt.Errorf("cluster: reading the node lease: %w", err)
		}
		var prev uint64
		if st == msgPresent {
			if l, ok := parseLease(data); ok {
				prev = l.epoch
			}
			d.log.Info("the lease of this node id is held; checking whether its holder is alive",
				"node_id", d.cfg.NodeID, "wait", d.holdCheck())
			select {
			case <-time.After(d.holdCheck()):
			case <-ctx.Done():
				return ctx.Err()
			}
			_, rev2, st2, err := d.readLease(ctx)
			if err != nil {
				return fmt.Errorf("cluster: reading the node lease: %w", err)
			}
			if st2 == msgPresent && rev2 != rev {
				return fmt.Errorf("%w: node-id %d", ErrNodeIDInUse, d.cfg.NodeID)
			}
			if st2 != msgPresent {
				continue // expired meanwhile: read it again
			}
		}
		d.epoch = max(uint64(time.Now().UnixNano()), prev+1)
		val := d.leaseValue()
		var nrev uint64
		sent := time.Now()
		wctx, cancel := context.WithTimeout(ctx, d.cfg.OpTimeout)
		if st == msgAbsent {
			nrev, err = d.leases.Create(wctx, key, val)
		} else {
			nrev, err = d.leases.Update(wctx, key, val, rev)
		}
		cancel()
		switch {
		case err == nil:
			d.leaseRev = nrev
			d.lastRenew.Store(int64(sent.Sub(d.base)))
			d.log.Info("node lease acquired", "node_id", d.cfg.NodeID, "epoch", d.epoch, "previous_epoch", prev)
			return nil
		case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			if attempt >= 3 {
				return fmt.Errorf("%w: node-id %d (lost the race for its lease)", ErrNodeIDInUse, d.cfg.NodeID)
			}
		case ctx.Err() != nil:
			return fmt.Errorf("cluster: writing the node lease: %w", err)
		default: // no stream leader yet, or a timeout: read again
			d.log.Info("writing the node lease failed; retrying", "err", err)
		}
	}
}

// holdCheck is how long acquireLease watches a held lease for renewals.
func (d *Directory) holdCheck() time.Duration {
	return max(2*d.cfg.LeaseRenew+100*time.Millisecond, d.cfg.LeaseTTL/3)
}

// readLease reads this node's lease until it gets an answer or ctx ends. Each try asks the
// stream leader first (lastMsg) and, when that gets no answer in time, any replica
// through the KV's own get (under load a freshly started node's leader reads were seen
// going unanswered for more than 20 s while its KV gets worked). A replica may be
// behind, which is safe here: the lease is then written with a CAS on the revision read,
// and a stale revision only makes the write fail and the loop read again.
func (d *Directory) readLease(ctx context.Context) ([]byte, uint64, msgState, error) {
	key := leaseKey(d.cfg.NodeID)
	stream, subject := streamOf(d.leasesBucket), subjectOf(d.leasesBucket, key)
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, min(d.cfg.OpTimeout, time.Second))
		data, rev, st, err := lastMsg(actx, d.nc, stream, subject)
		cancel()
		if err == nil || ctx.Err() != nil {
			return data, rev, st, err
		}
		actx, cancel = context.WithTimeout(ctx, min(d.cfg.OpTimeout, time.Second))
		e, gerr := d.leases.Get(actx, key)
		cancel()
		switch {
		case gerr == nil:
			return e.Value(), e.Revision(), msgPresent, nil
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			return nil, 0, msgAbsent, nil // deleted or absent: Create handles both
		}
		if last == nil || err.Error() != last.Error() {
			d.log.Info("reading the node lease failed; retrying", "err", err, "kv_get_err", gerr)
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, 0, 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// renewLoop rewrites the lease every LeaseRenew, each write a CAS on the last one. When
// the CAS fails, the leader says why: our own write landed after all (adopt its
// revision), the lease expired (write it again: the names still carrying this epoch are
// this node's again, and those taken over meanwhile are not), or another run of this node
// id holds it (the lease is lost for good and the directory is never ready again).
func (d *Directory) renewLoop() {
	defer d.renewWG.Done()
	key := leaseKey(d.cfg.NodeID)
	t := time.NewTicker(d.cfg.LeaseRenew)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-t.C:
		case <-d.hooks.renewNow: // the status changed (StatusChanged): tell the others now
		case <-d.ctx.Done():
			if d.release.Load() {
				d.releaseLease(key)
			}
			return
		}
		if d.fenced.Load() || d.leaseStale() {
			// Fenced (fence.go), or due to be (a process stopped past its fence limit
			// wakes here as likely as in fenceLoop): never write a lease that may have
			// expired again, since names given away meanwhile would then look live; give
			// it up instead, so that this node's names can be taken over at once rather
			// than when it expires; the renewals stop.
			d.fence(fenceStale)
			d.releaseLease(key)
			return
		}
		err := d.renew(key, d.leaseValue()) // with the node's status as it is now
		switch {
		case err == nil && failing:
			d.log.Info("node lease renewed again")
		case errors.Is(err, ErrLeaseLost):
			// Another process runs as this node id now (a replacement started while this
			// one was stopped, or a second node given the same id). Its names are that
			// run's to sweep: this one fences, so that its clients go elsewhere, and
			// leaves the lease alone.
			d.leaseLost.Store(true)
			d.fence(fenceLost)
			return
		case err != nil && !failing:
			d.log.Warn("node lease renewal failed", "err", err)
		}
		failing = err != nil
	}
}

// releaseLease deletes the lease (a CAS on the last renewal) as the node leaves. A second
// at most: healthy, this takes milliseconds; without a quorum (the whole cluster
// stopping at once) it cannot succeed, and the lease expires by itself.
func (d *Directory) releaseLease(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := d.leases.Delete(ctx, key, jetstream.LastRevision(d.leaseRev)); err != nil {
		d.log.Warn("releasing the node lease failed; it expires by itself", "err", err)
	}
}

func (d *Directory) renew(key string, val []byte) error {
	// A renewal may take longer than LeaseRenew (the ticker skips the ticks it misses),
	// but not so long that the lease could expire while it waits.
	ctx, cancel := context.WithTimeout(d.ctx, min(d.cfg.OpTimeout, d.cfg.LeaseTTL/2))
	defer cancel()
	sent := time.Now() // the KV counts the TTL from later: when it receives the write
	rev, err := d.leases.Update(ctx, key, val, d.leaseRev)
	if err == nil {
		d.leaseRev = rev
		d.lastRenew.Store(int64(sent.Sub(d.base)))
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return err
	}
	data, rev, st, err := lastMsg(ctx, d.nc, streamOf(d.leasesBucket), subjectOf(d.leasesBucket, key))
	if err != nil {
		return err
	}
	if st == msgPresent {
		if l, ok := parseLease(data); !ok || l.epoch != d.epoch {
			return ErrLeaseLost
		}
		d.leaseRev = rev // our last write landed although its answer was lost
		return errors.New("cluster: lease revision moved; adopted it")
	}
	if d.leaseStale() {
		return errors.New("cluster: node lease expired past the fence limit; not written again")
	}
	d.log.Warn("node lease had expired; writing it again", "node_id", d.cfg.NodeID)
	sent = time.Now()
	if st == msgAbsent {
		rev, err = d.leases.Create(ctx, key, val)
	} else {
		rev, err = d.leases.Update(ctx, key, val, rev)
	}
	if err != nil {
		return err
	}
	d.leaseRev = rev
	d.lastRenew.Store(int64(sent.Sub(d.base)))
	return nil
}
