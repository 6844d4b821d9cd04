package cluster

import (
	"sync"
	"time"
)

// Names removed lately, and the revision of their markers.
//
// A removed name leaves a marker in the names stream (deleteName): its last message,
// until the marker expires. The cache forgets the name (cache.remove), so a claim of it
// was written as a create, expecting no message at all, which the marker refuses; alone
// the claim then read the marker and wrote again by CAS on it (three KV round trips),
// and in a batch it failed the whole batch, split down to single claims. A drained
// node's deletes land while its clients re-register on the other nodes: 236–563
// batches refused per run; in one run logged refusal by refusal, every one was a
// "wrong last sequence" (a failed CAS) of a batch holding such names (docs/BENCHMARKS.md,
// "A whole node drained: handovers in batches").
//
// So the names watch keeps each removal's revision for removedKeep, shorter than the
// marker's TTL, and a claim of such a name expects that revision instead. A guess like
// any cache read: if the marker is gone, or the name was written since, the CAS fails
// and the claim decides as it would have.
type removedNames struct {
	mu     sync.Mutex
	m      map[string]removal // guarded by mu
	pruned time.Time          // guarded by mu: the last prune
}

type removal struct {
	rev uint64    // the marker's revision
	at  time.Time // when it was written (by the stream leader's clock), or delivered if later
}

// removedKeep is how long a removal is remembered: under nameMarkerTTL, after which the
// marker expires and a create expects no message again.
const removedKeep = 45 * time.Second

// add records that name was removed at revision rev by a marker written at at, and
// forgets removals older than removedKeep (at most every 5 s of now).
func (r *removedNames) add(name string, rev uint64, at, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]removal)
	}
	if old, ok := r.m[name]; (!ok || old.rev < rev) && now.Sub(at) <= removedKeep {
		r.m[name] = removal{rev: rev, at: at}
	}
	if now.Sub(r.pruned) < 5*time.Second {
		return
	}
	r.pruned = now
	for n, x := range r.m {
		if now.Sub(x.at) > removedKeep {
			delete(r.m, n)
		}
	}
}

// written forgets name's removal once a revision after it was written.
func (r *removedNames) written(name string, rev uint64) {
	r.mu.Lock()
	if x, ok := r.m[name]; ok && x.rev < rev {
		delete(r.m, name)
	}
	r.mu.Unlock()
}

// rev returns the revision of name's marker if it was removed within removedKeep.
func (r *removedNames) rev(name string, now time.Time) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	x, ok := r.m[name]
	if !ok || now.Sub(x.at) > removedKeep {
		return 0, false
	}
	return x.rev, true
}
