package shard

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

const (
	// Partitions is the number of independently locked partitions of a
	// Registry.
	Partitions = 64

	partitionShift = 64 - 6 // top 6 bits of the hash pick the partition

	// MaxNameLen is the longest name Register accepts, in bytes.
	MaxNameLen = 255

	// cacheLine is the padding unit. 128 rather than 64 because Intel's
	// adjacent-line prefetcher pulls cache lines in pairs.
	cacheLine = 128
)

// Registry is the node's name → ConnID directory, split into Partitions
// partitions, each with its own sync.RWMutex and map. A name's partition is
// chosen by hash/maphash with a per-Registry random seed, so peers cannot
// aim many names at one partition without knowing the seed.
//
// All methods are safe for concurrent use. A partition lock is held only for
// the map operation itself, never across I/O or callbacks. The zero Registry
// is not usable; call NewRegistry.
type Registry struct {
	seed maphash.Seed // immutable after NewRegistry
	_    [cacheLine - 8]byte

	n atomic.Int64 // atomic; number of registered names
	_ [cacheLine - 8]byte

	parts [Partitions]partition
}

type partition struct {
	mu sync.RWMutex
	m  map[string]ConnID // guarded by mu
	// Pad to a whole number of cache lines so that one partition's lock
	// traffic does not invalidate its neighbours'.
	_ [cacheLine - 32]byte
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	r := &Registry{seed: maphash.MakeSeed()}
	for i := range r.parts {
		r.parts[i].m = make(map[string]ConnID)
	}
	return r
}

func (r *Registry) partitionOf(name string) *partition {
	return &r.parts[maphash.String(r.seed, name)>>partitionShift]
}

func (r *Registry) partitionOfBytes(name []byte) *partition {
	return &r.parts[maphash.Bytes(r.seed, name)>>partitionShift]
}

// Register makes id the owner of name. It returns nil if name was free or is
// already owned by id, ErrNameTaken if another connection owns it, and
// ErrBadName if name is empty or longer than MaxNameLen bytes. Register
// panics if id is zero, which no Table issues.
//
// The Registry keeps its own copy of name, so name may share memory with a
// larger string without pinning it.
func (r *Registry) Register(name string, id ConnID) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return ErrBadName
	}
	if id == 0 {
		panic("BUG: shard: Register with zero ConnID")
	}
	p := r.partitionOf(name)
	p.mu.Lock()
	if owner, ok := p.m[name]; ok {
		p.mu.Unlock()
		if owner == id {
			return nil
		}
		return ErrNameTaken
	}
	p.m[strings.Clone(name)] = id
	p.mu.Unlock()
	r.n.Add(1)
	return nil
}

// Unregister removes name if it is owned by id. It returns ErrNotFound if
// name is not registered and ErrNotOwner if another connection owns it.
func (r *Registry) Unregister(name string, id ConnID) error {
	p := r.partitionOf(name)
	p.mu.Lock()
	owner, ok := p.m[name]
	switch {
	case !ok:
		p.mu.Unlock()
		return ErrNotFound
	case owner != id:
		p.mu.Unlock()
		return ErrNotOwner
	}
	delete(p.m, name)
	p.mu.Unlock()
	r.n.Add(-1)
	return nil
}

// Lookup returns the owner of name. It takes only a partition read lock,
// does not allocate, and does not retain name after it returns, so name
// may be a slice borrowed from a network buffer.
func (r *Registry) Lookup(name []byte) (ConnID, bool) {
	p := r.partitionOfBytes(name)
	p.mu.RLock()
	id, ok := p.m[string(name)] // no allocation: the compiler special-cases m[string(b)]
	p.mu.RUnlock()
	return id, ok
}

// Len returns the number of registered names. It takes no locks; under
// concurrent updates the value is a recent snapshot.
func (r *Registry) Len() int { return int(r.n.Load()) }

// PartitionSizes returns the number of names in each partition, in
// partition order. Partitions are read one at a time, so under concurrent
// updates the sizes are not a consistent snapshot.
func (r *Registry) PartitionSizes() []int {
	sizes := make([]int, Partitions)
	for i := range r.parts {
		p := &r.parts[i]
		p.mu.RLock()
		sizes[i] = len(p.m)
		p.mu.RUnlock()
	}
	return sizes
}
