package shard

// Table is a per-event-loop connection table: it maps ConnIDs issued by Add
// to values of type T (typically the loop's per-connection state).
//
// A Table is owned by one goroutine (its event loop) and has no locks; none
// of its methods is safe for concurrent use. Other goroutines reach a
// connection by sending its ConnID to the owning loop (for example through a
// Ring) and letting the loop call Get.
//
// Freed slots are reused LIFO, which keeps the hot part of the slot slice
// small and warm in cache. Each reuse bumps the slot's generation, so Get,
// Set and Remove reject IDs of connections that have gone away.
type Table[T any] struct {
	prefix uint64    // node and loop bits of every ID issued here; immutable after New
	slots  []slot[T] // owned by loop; grows by append, never shrinks
	free   []uint32  // owned by loop; stack of free slot indexes
	n      int       // owned by loop; number of used slots
}

type slot[T any] struct {
	v    T
	gen  uint16 // generation of the current (or last) occupant; never 0 once used
	used bool
}

// NewTable returns an empty Table whose IDs carry the given node and loop.
func NewTable[T any](node uint16, loop uint8) *Table[T] {
	return &Table[T]{prefix: uint64(node)<<nodeShift | uint64(loop)<<loopShift}
}

// Add stores v in a free slot and returns its new ID. It returns ErrTableFull
// if all MaxSlots slots are in use.
func (t *Table[T]) Add(v T) (ConnID, error) {
	var i uint32
	if k := len(t.free); k > 0 {
		i = t.free[k-1]
		t.free = t.free[:k-1]
	} else {
		if len(t.slots) >= MaxSlots {
			return 0, ErrTableFull
		}
		i = uint32(len(t.slots))
		t.slots = append(t.slots, slot[T]{})
	}
	s := &t.slots[i]
	s.gen++
	if s.gen == 0 { // wrapped: 0 is reserved so that no issued ID is ever zero
		s.gen = 1
	}
	s.v = v
	s.used = true
	t.n++
	return ConnID(t.prefix | uint64(i)<<slotShift | uint64(s.gen)), nil
}

// lookup returns the used slot that id refers to, or nil.
func (t *Table[T]) lookup(id ConnID) *slot[T] {
	if uint64(id)&^(1<<loopShift-1) != t.prefix {
		return nil // another node or loop
	}
	i := id.Slot()
	if i >= uint32(len(t.slots)) {
		return nil
	}
	s := &t.slots[i]
	if !s.used || s.gen != id.Gen() {
		return nil
	}
	return s
}

// Get returns the value stored under id. It reports false if id belongs to
// another node or loop, was never issued, or refers to a removed connection
// (including one whose slot has since been reused). Get does not allocate.
func (t *Table[T]) Get(id ConnID) (T, bool) {
	if s := t.lookup(id); s != nil {
		return s.v, true
	}
	var zero T
	return zero, false
}

// Set replaces the value stored under id and reports whether id was live.
func (t *Table[T]) Set(id ConnID, v T) bool {
	s := t.lookup(id)
	if s == nil {
		return false
	}
	s.v = v
	return true
}

// Remove frees id's slot and returns the value it held. It reports false,
// and changes nothing, if id is not live. The slot's copy of the value is
// zeroed so the Table retains nothing of a removed connection.
func (t *Table[T]) Remove(id ConnID) (T, bool) {
	var zero T
	s := t.lookup(id)
	if s == nil {
		return zero, false
	}
	v := s.v
	s.v = zero
	s.used = false
	t.free = append(t.free, id.Slot())
	t.n--
	return v, true
}

// At returns the live entry in slot i with its ID, whatever generation it has; false if
// the slot is free or was never used. It is for IDs handed out in another form (a reply
// token whose generation bits carry something else) that are checked by their value.
func (t *Table[T]) At(i uint32) (ConnID, T, bool) {
	if i < uint32(len(t.slots)) {
		if s := &t.slots[i]; s.used {
			return ConnID(t.prefix | uint64(i)<<slotShift | uint64(s.gen)), s.v, true
		}
	}
	var zero T
	return 0, zero, false
}

// Len returns the number of live entries.
func (t *Table[T]) Len() int { return t.n }

// Range calls fn for each live entry in slot order until fn returns false.
// fn may call Set or Remove on any ID; entries added by fn may or may not be
// visited.
func (t *Table[T]) Range(fn func(ConnID, T) bool) {
	for i := 0; i < len(t.slots); i++ {
		s := &t.slots[i]
		if !s.used {
			continue
		}
		if !fn(ConnID(t.prefix|uint64(i)<<slotShift|uint64(s.gen)), s.v) {
			return
		}
	}
}
