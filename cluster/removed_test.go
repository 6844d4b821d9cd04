package cluster

import (
	"testing"
	"time"
)

// TestRemovedNames: a removal is remembered for removedKeep from when its marker was
// written, not delivered (a watch's replay delivers markers up to their TTL old); a
// later write of the name forgets it; a newer removal replaces an older one; old ones
// are pruned.
func TestRemovedNames(t *testing.T) {
	var r removedNames
	now := time.Unix(1_000_000, 0)
	r.add("fresh", 10, now, now)
	r.add("replayed", 11, now.Add(-40*time.Second), now) // written 40 s before its delivery
	r.add("stale", 12, now.Add(-50*time.Second), now)    // past removedKeep already
	for _, c := range []struct {
		name string
		at   time.Time
		rev  uint64
		ok   bool
	}{
		{"fresh", now, 10, true},
		{"replayed", now, 11, true},
		{"replayed", now.Add(6 * time.Second), 0, false}, // 46 s after its marker
		{"stale", now, 0, false},
		{"fresh", now.Add(removedKeep), 10, true},
		{"fresh", now.Add(removedKeep + time.Second), 0, false},
	} {
		rev, ok := r.rev(c.name, c.at)
		if rev != c.rev || ok != c.ok {
			t.Errorf("rev(%q) at +%v = %d, %v; want %d, %v", c.name, c.at.Sub(now), rev, ok, c.rev, c.ok)
		}
	}
	r.add("fresh", 9, now, now) // an older removal delivered late: kept the newer one
	if rev, _ := r.rev("fresh", now); rev != 10 {
		t.Errorf("an older removal replaced a newer one: rev %d", rev)
	}
	r.written("fresh", 13)
	if _, ok := r.rev("fresh", now); ok {
		t.Error("a removal kept after a later write of the name")
	}
	later := now.Add(time.Minute)
	r.add("other", 20, later, later) // prunes what is past removedKeep
	r.mu.Lock()
	n := len(r.m)
	r.mu.Unlock()
	if n != 1 {
		t.Errorf("%d removals kept after the prune; want 1 (other)", n)
	}
}
