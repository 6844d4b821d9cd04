package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxDoubts bounds the claims waiting for reconciliation. Each is a claim whose outcome
// NATS did not tell (write and read-back both failed): past the bound an arbitrary one
// is dropped, and its entry, if it landed, stays until this node restarts (its sweep).
const maxDoubts = 1 << 16

// doubtKey is the claim in doubt: a name and the owner value its write carried.
type doubtKey struct {
	name  string
	owner owner
}

// doubt is a claim reported to the server as failed although its KV write may have
// landed: when it failed, and a sequence number telling it from a later doubt of the
// same claim.
type doubt struct {
	seq uint64
	at  time.Time
}

// doubtClaim records that the claim of name by o failed without an answer from NATS:
// the server was told the name is not registered, so if the write landed after all,
// reconcile deletes it. Called by the claim worker that failed.
func (d *Directory) doubtClaim(name string, o owner) {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	k := doubtKey{name, o}
	if _, ok := d.doubts[k]; !ok && len(d.doubts) >= maxDoubts {
		for n := range d.doubts { // any one: map order
			delete(d.doubts, n) // len restored below
			d.doubtsDropped.Add(1)
			break
		}
	}
	d.doubtSeq++
	d.doubts[k] = doubt{seq: d.doubtSeq, at: time.Now()}
	d.ndoubts.Store(int64(len(d.doubts)))
	select {
	case d.dwake <- struct{}{}:
	default:
	}
}

// claimStarts withdraws a doubt of name by o when o claims name again: that claim's own
// outcome is what the server will be told (and what a write of it makes true), so an
// entry it finds or writes is not to be reconciled away. A doubt of another owner stays.
// It reports whether there was one: a claim that then fails without a write of its own
// in doubt records it again (decide).
func (d *Directory) claimStarts(name string, o owner) bool {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	k := doubtKey{name, o}
	_, ok := d.doubts[k]
	if ok {
		delete(d.doubts, k)
		d.ndoubts.Store(int64(len(d.doubts)))
	}
	return ok
}

// inDoubt reports whether o's claim of name is waiting to be reconciled. Called on
// event loops (the Claim fast path): an atomic load while nothing is in doubt, the usual
// case; otherwise a mutex held by others only for map operations.
func (d *Directory) inDoubt(name string, o owner) bool {
	if d.ndoubts.Load() == 0 {
		return false
	}
	d.dmu.Lock()
	_, ok := d.doubts[doubtKey{name, o}]
	d.dmu.Unlock()
	return ok
}

// reconcileLoop deletes the KV entries of doubtful claims that landed: at once when one
// is recorded, then every LeaseRenew while any is left, until the directory stops.
func (d *Directory) reconcileLoop() {
	defer d.wg.Done()
	for {
		select {
		case <-d.dwake:
		case <-d.ctx.Done():
			return
		}
		for !d.reconcile() {
			select { // NATS did not answer for some: try again later
			case <-time.After(d.cfg.LeaseRenew):
			case <-d.ctx.Done():
				return
			}
		}
	}
}

// reconcile settles every doubt recorded so far and reports whether none is left. A
// doubt is settled when the entry holds another owner or none (the write did not land,
// or the name moved on) long enough after the claim, or when the entry is its owner's
// and is deleted. The delete is a
// CAS on the revision read, and a claim of the same name by the same connection
// withdraws the doubt before it writes (claimStarts), and the Claim fast path does not
// answer from the cache while a doubt stands (inDoubt), so a registration that succeeded
// is never deleted: either reconcile reads after the withdrawal and skips, or the
// claim's write comes after the read and the CAS fails.
func (d *Directory) reconcile() bool {
	if d.holdDoubts.Load() {
		return false // tried again after LeaseRenew
	}
	d.dmu.Lock()
	todo := make(map[doubtKey]doubt, len(d.doubts))
	for k, v := range d.doubts {
		todo[k] = v
	}
	d.dmu.Unlock()
	left, failed := false, false
	for k, v := range todo {
		if d.ctx.Err() != nil {
			return true
		}
		settled, err := d.settle(k, v)
		if err != nil || !settled {
			left, failed = true, failed || err != nil
			continue
		}
		d.dmu.Lock()
		if cur, ok := d.doubts[k]; ok && cur.seq == v.seq {
			delete(d.doubts, k)
			d.ndoubts.Store(int64(len(d.doubts)))
		}
		d.dmu.Unlock()
	}
	if failed {
		d.log.Warn("reconciling claims NATS did not answer: some reads or deletes failed; retrying", "pending", d.doubtCount())
	}
	return !left
}

// settle handles one doubt; it reports whether the doubt is done with.
func (d *Directory) settle(k doubtKey, v doubt) (bool, error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.OpTimeout)
	defer cancel()
	key := nameKey(k.name)
	data, rev, st, err := lastMsg(ctx, d.nc, streamOf(d.namesBucket), subjectOf(d.namesBucket, key))
	if err != nil {
		return false, err
	}
	if cur, ok := parseOwner(data); st != msgPresent || !ok || cur != k.owner {
		// Not (or no longer) this owner's. A write that timed out may still be applied
		// for a while (queued on a leader being elected): believe "not landed" only once
		// twice the operation timeout has passed since the claim failed.
		return time.Since(v.at) >= 2*d.cfg.OpTimeout, nil
	}
	d.dmu.Lock()
	cur, still := d.doubts[k]
	d.dmu.Unlock()
	if !still || cur.seq != v.seq {
		return true, nil // claimed again since: that claim's outcome stands
	}
	err = d.deleteName(ctx, key, rev)
	switch {
	case err == nil:
		d.reconciled.Add(1)
		d.log.Info("deleted the entry of a claim reported as failed that had landed", "name", k.name, "owner", k.owner.id.String())
		return true, nil
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return true, nil // written since: by a claim whose outcome the server was told
	default:
		return false, err
	}
}

func (d *Directory) doubtCount() int {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	return len(d.doubts)
}
