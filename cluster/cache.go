package cluster

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/switchboard/switchboard/shard"
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
	// epochs are the owners' epochs the entries refer to, by index (slot.meta): one per
	// run of a node seen, so a few. Appended to under emu, the longer header published
	// after the element is written; read without a lock.
	epochs  atomic.Pointer[[]uint64]
	emu     sync.Mutex
	epochIx map[uint64]uint32 // guarded by emu: an epoch's index in epochs
	parts   [cachePartitions]cachePart
}

type cachePart struct {
	mu sync.RWMutex
	m  map[string]slot // guarded by mu
	_  [128 - 32]byte  // keep partitions' locks on separate cache lines
}

// cached is one name in the cache, as the cache's methods take and return it.
type cached struct {
	owner
	rev  uint64 // KV revision this reflects
	dead bool   // removed at rev: a tombstone, not an owner
}

// slot is a cached as the maps hold it: 16 bytes instead of 32 (a map slot with its key
// is 32 bytes instead of 48; at 100K names, ~2 MB less on every node). The owner's epoch
// is an index into cache.epochs, and the revision, that index and the tombstone flag
// share one word:
//
//	rev (47 bits) | epoch index (16 bits) | dead (1 bit)
//
// 47 bits of KV revisions last ~45 years at 100,000 writes per second. Past 65,535
// distinct epochs (runs of nodes seen by this process) a new epoch is stored as
// epochUnknown, which matches no run: its names are not served (Lookup finds no live
// owner), as if their node had gone.
type slot struct {
	id   shard.ConnID
	meta uint64
}

const (
	slotRevShift  = 17
	slotEpochBits = 16
	maxSlotRev    = 1<<(64-slotRevShift) - 1
	epochUnknown  = 1<<slotEpochBits - 1 // index of no epoch
)

func newCache(self uint16) *cache {
	c := &cache{seed: maphash.MakeSeed(), self: self, epochIx: make(map[uint64]uint32)}
	c.epochs.Store(new([]uint64))
	for i := range c.parts {
		c.parts[i].m = make(map[string]slot)
	}
	return c
}

// epochIndex returns epoch's index in c.epochs, adding it if new (epochUnknown when the
// table is full).
func (c *cache) epochIndex(epoch uint64) uint64 {
	// The usual case: a run already seen, among a few (one or two per node).
	if es := *c.epochs.Load(); len(es) <= 64 {
		for i, x := range es {
			if x == epoch {
				return uint64(i)
			}
		}
	}
	c.emu.Lock()
	defer c.emu.Unlock()
	if i, ok := c.epochIx[epoch]; ok {
		return uint64(i)
	}
	es := *c.epochs.Load()
	if len(es) >= epochUnknown {
		return epochUnknown
	}
	// Readers hold headers no longer than es, so appending in place is safe: the new
	// element is written before the header that shows it is published.
	n := append(es, epoch)
	c.epochIx[epoch] = uint32(len(es))
	c.epochs.Store(&n)
	return uint64(len(es))
}

// pack turns e into a slot, interning its epoch.
func (c *cache) pack(e cached) slot {
	if e.rev > maxSlotRev {
		panic("BUG: cluster: KV revision beyond the cache's 47 bits")
	}
	m := e.rev<<slotRevShift | c.epochIndex(e.epoch)<<1
	if e.dead {
		m |= 1
	}
	return slot{id: e.id, meta: m}
}

// unpack is pack's inverse. No allocation, no lock.
func (c *cache) unpack(s slot) cached {
	e := cached{owner: owner{id: s.id}, rev: s.meta >> slotRevShift, dead: s.meta&1 != 0}
	if i := s.meta >> 1 & epochUnknown; i != epochUnknown {
		e.epoch = (*c.epochs.Load())[i]
	}
	return e
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
	s, ok := p.m[string(name)]
	p.mu.RUnlock()
	if !ok || s.meta&1 != 0 {
		return owner{}, false
	}
	return c.unpack(s).owner, true
}

// get returns name's entry, tombstones included.
func (c *cache) get(name string) (cached, bool) {
	p := c.partString(name)
	p.mu.RLock()
	s, ok := p.m[name]
	p.mu.RUnlock()
	if !ok {
		return cached{}, false
	}
	return c.unpack(s), true
}

// set applies a change of name at revision e.rev unless the cache holds a newer one (or
// a tombstone of the same revision: this node's own unregister, which the watch has not
// reported yet). It reports whether it applied the change.
func (c *cache) set(name string, e cached) bool {
	s := c.pack(e) // before the lock: it may take emu
	p := c.partString(name)
	p.mu.Lock()
	prev, had := p.m[name]
	var old cached
	if had {
		old = c.unpack(prev)
	}
	if had && (old.rev > e.rev || old.rev == e.rev && old.dead) {
		p.mu.Unlock()
		return false
	}
	p.m[name] = s
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
	prev, had := p.m[name]
	if !had { // nothing to remove (and nothing to unpack: the epoch table may be empty)
		p.mu.Unlock()
		return
	}
	old := c.unpack(prev)
	if old.rev > rev {
		p.mu.Unlock()
		return
	}
	delete(p.m, name)
	p.mu.Unlock()
	c.count(old, true, -1)
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
		for n, s := range p.m {
			if s.meta&1 == 0 {
				batch = append(batch, struct {
					name string
					e    cached
				}{n, c.unpack(s)})
			}
		}
		p.mu.RUnlock()
		for _, b := range batch {
			fn(b.name, b.e)
		}
	}
}
