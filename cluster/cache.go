package cluster

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

const cachePartitions = 64

// cache is a node's copy of the names bucket: name → owner, fed by the names watch and
// by this node's own successful writes (so that a claim or an unregister is visible on
// this node before its watch event comes back). Lookups run on event loops: a partition
// read lock and a map read, no allocation.
//
// Every entry remembers the KV revision it reflects, and a change older than the entry
// is ignored, so the watch replaying a revision this node already applied changes
// nothing. A removed name leaves a tombstone (dead) carrying the revision it was removed
// at, until a newer change of that name arrives: without it, a watch lagging behind this
// node's own delete would bring the name back for a moment.
//
// Safe for concurrent use; a partition lock is held only for the map operation.
type cache struct {
	seed  maphash.Seed // immutable after newCache
	self  uint16       // this node's id; immutable after newCache
	epoch atomic.Uint64
	local atomic.Int64 // live names owned by a connection of this node and epoch
	parts [cachePartitions]cachePart
}

type cachePart struct {
	mu sync.RWMutex
	m  map[string]cached // guarded by mu
	_  [128 - 32]byte    // keep partitions' locks on separate cache lines
}

// cached is one name in the cache.
type cached struct {
	owner
	rev  uint64 // KV revision this reflects
	dead bool   // removed at rev: a tombstone, not an owner
}

func newCache(self uint16) *cache {
	c := &cache{seed: maphash.MakeSeed(), self: self}
	for i := range c.parts {
		c.parts[i].m = make(map[string]cached)
	}
	return c
}

func (c *cache) part(name []byte) *cachePart {
	return &c.parts[maphash.Bytes(c.seed, name)>>(64-6)]
}

func (c *cache) partString(name string) *cachePart {
	return &c.parts[maphash.String(c.seed, name)>>(64-6)]
}

// lookup returns name's live owner. No allocation; name is not retained.
func (c *cache) lookup(name []byte) (owner, bool) {
	p := c.part(name)
	p.mu.RLock()
	e, ok := p.m[string(name)]
	p.mu.RUnlock()
	return e.owner, ok && !e.dead
}

// get returns name's entry, tombstones included.
func (c *cache) get(name string) (cached, bool) {
	p := c.partString(name)
	p.mu.RLock()
	e, ok := p.m[name]
	p.mu.RUnlock()
	return e, ok
}

// set applies a change of name at revision e.rev unless the cache holds a newer one (or
// a tombstone of the same revision: this node's own unregister, which the watch has not
// reported yet). It reports whether it applied the change.
func (c *cache) set(name string, e cached) bool {
	p := c.partString(name)
	p.mu.Lock()
	old, had := p.m[name]
	if had && (old.rev > e.rev || old.rev == e.rev && old.dead) {
		p.mu.Unlock()
		return false
	}
	p.m[name] = e
	p.mu.Unlock()
	c.count(old, had, -1)
	c.count(e, true, +1)
	return true
}

// remove applies the removal of name at revision rev (a delete or purge seen by the
// watch): the entry goes, tombstone included, unless it is newer than rev.
func (c *cache) remove(name string, rev uint64) {
	p := c.partString(name)
	p.mu.Lock()
	old, had := p.m[name]
	if had && old.rev > rev {
		p.mu.Unlock()
		return
	}
	delete(p.m, name)
	p.mu.Unlock()
	c.count(old, had, -1)
}

// count adds sign to the local count if e is a live name of this node's current epoch.
func (c *cache) count(e cached, ok bool, sign int64) {
	if ok && !e.dead && e.node() == c.self && e.epoch == c.epoch.Load() {
		c.local.Add(sign)
	}
}

// each calls fn for every live entry, partition by partition, without holding a lock
// while fn runs (fn may write to the cache).
func (c *cache) each(fn func(name string, e cached)) {
	var batch []struct {
		name string
		e    cached
	}
	for i := range c.parts {
		p := &c.parts[i]
		batch = batch[:0]
		p.mu.RLock()
		for n, e := range p.m {
			if !e.dead {
				batch = append(batch, struct {
					name string
					e    cached
				}{n, e})
			}
		}
		p.mu.RUnlock()
		for _, b := range batch {
			fn(b.name, b.e)
		}
	}
}
