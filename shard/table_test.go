package shard

import (
	"testing"
)

func TestTableAddGetRemove(t *testing.T) {
	tb := NewTable[string](3, 2)
	a, err := tb.Add("a")
	if err != nil {
		t.Fatalf("Add: got error %v; want nil", err)
	}
	b, _ := tb.Add("b")
	if a == 0 || b == 0 || a == b {
		t.Fatalf("got IDs %v, %v; want distinct non-zero", a, b)
	}
	for _, id := range []ConnID{a, b} {
		if id.Node() != 3 || id.Loop() != 2 {
			t.Errorf("id %v: got node %d loop %d; want node 3 loop 2", id, id.Node(), id.Loop())
		}
	}
	if got := tb.Len(); got != 2 {
		t.Errorf("Len() = %d; want 2", got)
	}
	if v, ok := tb.Get(a); !ok || v != "a" {
		t.Errorf("Get(a) = %q, %v; want \"a\", true", v, ok)
	}
	if !tb.Set(a, "a2") {
		t.Errorf("Set(a) = false; want true")
	}
	if v, ok := tb.Remove(a); !ok || v != "a2" {
		t.Errorf("Remove(a) = %q, %v; want \"a2\", true", v, ok)
	}
	if got := tb.Len(); got != 1 {
		t.Errorf("Len() after Remove = %d; want 1", got)
	}
	if v, ok := tb.Get(a); ok {
		t.Errorf("Get(removed) = %q, true; want false", v)
	}
	if _, ok := tb.Remove(a); ok {
		t.Errorf("Remove(removed) = true; want false")
	}
	if tb.Set(a, "x") {
		t.Errorf("Set(removed) = true; want false")
	}
	if tb.slots[a.Slot()].v != "" {
		t.Errorf("removed slot retains %q; want zero value", tb.slots[a.Slot()].v)
	}
}

func TestTableReuseAndStaleGeneration(t *testing.T) {
	tb := NewTable[int](0, 0)
	ids := make([]ConnID, 4)
	for i := range ids {
		ids[i], _ = tb.Add(i)
	}
	tb.Remove(ids[1])
	tb.Remove(ids[3])
	// LIFO: the most recently freed slot is reused first.
	c, _ := tb.Add(30)
	if c.Slot() != ids[3].Slot() {
		t.Errorf("reused slot %d; want %d (LIFO)", c.Slot(), ids[3].Slot())
	}
	if c.Gen() != ids[3].Gen()+1 {
		t.Errorf("reused gen %d; want %d", c.Gen(), ids[3].Gen()+1)
	}
	d, _ := tb.Add(10)
	if d.Slot() != ids[1].Slot() {
		t.Errorf("reused slot %d; want %d (LIFO)", d.Slot(), ids[1].Slot())
	}
	if len(tb.slots) != 4 {
		t.Errorf("len(slots) = %d; want 4 (no growth while free slots exist)", len(tb.slots))
	}
	// The stale IDs must not reach the new occupants.
	for _, stale := range []ConnID{ids[1], ids[3]} {
		if v, ok := tb.Get(stale); ok {
			t.Errorf("Get(stale %v) = %d, true; want false", stale, v)
		}
		if tb.Set(stale, -1) {
			t.Errorf("Set(stale %v) = true; want false", stale)
		}
		if _, ok := tb.Remove(stale); ok {
			t.Errorf("Remove(stale %v) = true; want false", stale)
		}
	}
	if v, ok := tb.Get(c); !ok || v != 30 {
		t.Errorf("Get(c) = %d, %v; want 30, true", v, ok)
	}
}

func TestTableRejectsForeignIDs(t *testing.T) {
	tb := NewTable[int](1, 1)
	id, _ := tb.Add(1)
	tests := []struct {
		name string
		id   ConnID
	}{
		{"zero", 0},
		{"other node", MakeConnID(2, 1, id.Slot(), id.Gen())},
		{"other loop", MakeConnID(1, 2, id.Slot(), id.Gen())},
		{"slot out of range", MakeConnID(1, 1, 99, 1)},
		{"wrong gen", MakeConnID(1, 1, id.Slot(), id.Gen()+1)},
		{"gen zero", MakeConnID(1, 1, id.Slot(), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := tb.Get(tt.id); ok {
				t.Errorf("Get(%v) = true; want false", tt.id)
			}
			if tb.Set(tt.id, 5) {
				t.Errorf("Set(%v) = true; want false", tt.id)
			}
			if _, ok := tb.Remove(tt.id); ok {
				t.Errorf("Remove(%v) = true; want false", tt.id)
			}
		})
	}
	if v, ok := tb.Get(id); !ok || v != 1 {
		t.Errorf("Get(id) = %d, %v; want 1, true", v, ok)
	}
}

func TestTableGenerationWrapSkipsZero(t *testing.T) {
	tb := NewTable[int](0, 0)
	var prev ConnID
	seen := make(map[uint16]bool)
	for i := 0; i < 1<<16+2; i++ {
		id, err := tb.Add(i)
		if err != nil {
			t.Fatal(err)
		}
		if id == 0 || id.Gen() == 0 {
			t.Fatalf("iteration %d: got id %v with gen 0; want gen != 0", i, id)
		}
		if id.Slot() != 0 {
			t.Fatalf("iteration %d: got slot %d; want 0", i, id.Slot())
		}
		if i > 0 && id == prev {
			t.Fatalf("iteration %d: id %v repeats the previous one", i, id)
		}
		if i == 1<<16-1 { // gens 1..65535 are used up: the next must wrap to 1
			if len(seen) != 1<<16-1 || id.Gen() != 1 {
				t.Fatalf("at wrap: %d distinct gens, new gen %d; want %d, 1", len(seen), id.Gen(), 1<<16-1)
			}
		}
		seen[id.Gen()] = true
		if _, ok := tb.Remove(id); !ok {
			t.Fatalf("iteration %d: Remove(%v) = false; want true", i, id)
		}
		prev = id
	}
	if seen[0] {
		t.Errorf("gen 0 was issued")
	}
	if len(seen) != 1<<16-1 {
		t.Errorf("distinct gens = %d; want %d", len(seen), 1<<16-1)
	}
}

func TestTableFull(t *testing.T) {
	tb := NewTable[struct{}](0, 0)
	// Pretend the table already holds MaxSlots entries without paying for
	// 16M Adds: the slice length is what Add checks.
	tb.slots = make([]slot[struct{}], MaxSlots)
	for i := range tb.slots {
		tb.slots[i].used = true
		tb.slots[i].gen = 1
	}
	tb.n = MaxSlots
	if id, err := tb.Add(struct{}{}); err != ErrTableFull || id != 0 {
		t.Fatalf("Add on full table = %v, %v; want 0, ErrTableFull", id, err)
	}
	last := MakeConnID(0, 0, MaxSlots-1, 1)
	if _, ok := tb.Remove(last); !ok {
		t.Fatalf("Remove(%v) = false; want true", last)
	}
	id, err := tb.Add(struct{}{})
	if err != nil || id.Slot() != MaxSlots-1 || id.Gen() != 2 {
		t.Fatalf("Add after Remove = %v, %v; want slot %d gen 2, nil", id, err, MaxSlots-1)
	}
}

func TestTableRange(t *testing.T) {
	tb := NewTable[int](0, 0)
	var ids []ConnID
	for i := 0; i < 6; i++ {
		id, _ := tb.Add(i)
		ids = append(ids, id)
	}
	tb.Remove(ids[2])
	got := map[ConnID]int{}
	tb.Range(func(id ConnID, v int) bool {
		got[id] = v
		if v == 4 {
			tb.Remove(id) // removing during Range is allowed
		}
		return true
	})
	if len(got) != 5 {
		t.Errorf("Range visited %d entries; want 5", len(got))
	}
	for i, id := range ids {
		if i == 2 {
			continue
		}
		if v, ok := got[id]; !ok || v != i {
			t.Errorf("Range: id %v got %d, %v; want %d, true", id, v, ok, i)
		}
	}
	if tb.Len() != 4 {
		t.Errorf("Len() = %d; want 4", tb.Len())
	}
	n := 0
	tb.Range(func(ConnID, int) bool { n++; return n < 2 })
	if n != 2 {
		t.Errorf("Range after false: visited %d; want 2", n)
	}
}

func TestTableGetNoAllocs(t *testing.T) {
	tb := NewTable[*int](0, 0)
	x := 1
	id, _ := tb.Add(&x)
	stale := MakeConnID(0, 0, id.Slot(), id.Gen()+1)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := tb.Get(id); !ok {
			panic("Get failed")
		}
		if _, ok := tb.Get(stale); ok {
			panic("stale Get succeeded")
		}
	})
	if allocs != 0 {
		t.Errorf("Get allocs = %v; want 0", allocs)
	}
}

func TestTableAt(t *testing.T) {
	tb := NewTable[string](1, 2)
	a, _ := tb.Add("a")
	b, _ := tb.Add("b")
	tb.Remove(a)
	if _, _, ok := tb.At(a.Slot()); ok {
		t.Fatal("At found a removed entry")
	}
	if _, _, ok := tb.At(99); ok {
		t.Fatal("At found a slot never used")
	}
	if id, v, ok := tb.At(b.Slot()); !ok || id != b || v != "b" {
		t.Fatalf("At(%d) = %v %q %v; want %v b true", b.Slot(), id, v, ok, b)
	}
	c, _ := tb.Add("c") // reuses a's slot with the next generation
	if id, v, ok := tb.At(a.Slot()); !ok || id != c || v != "c" || id.Gen() == a.Gen() {
		t.Fatalf("At(reused) = %v %q %v; want %v c true", id, v, ok, c)
	}
}
