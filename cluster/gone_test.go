package cluster

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestGoneSweep: a node killed and not restarted leaves its names in the KV; once its
// lease has expired, the sweeper (node 1, the lowest id) deletes them, and only them; the
// other node does not sweep. Not before the lease is gone: the dead node's names are
// taken over by claims until then, and its lease could still be renewed.
func TestGoneSweep(t *testing.T) {
	cl := startClusterWith(t, func(c *Config) { c.goneSweepEvery = 300 * time.Millisecond })
	a, b, c := cl.node(0).Directory(), cl.node(1).Directory(), cl.node(2).Directory()
	var gone []string
	for i := range 20 {
		name := "gone-" + strconv.Itoa(i)
		if err := claim(t, c, name, conn(3, uint32(i+1))); err != nil {
			t.Fatal(err)
		}
		gone = append(gone, name)
	}
	if err := claim(t, b, "kept", conn(2, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 1 to see node 3's names", 10*time.Second, func() bool {
		for _, name := range gone {
			if _, ok := a.cache.get(name); !ok {
				return false
			}
		}
		return true
	})
	state := func(name string) msgState {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, st, err := lastMsg(ctx, a.nc, streamOf(a.namesBucket), subjectOf(a.namesBucket, nameKey(name)))
		if err != nil {
			t.Fatalf("%q: leader read: %v", name, err)
		}
		return st
	}
	killed := time.Now()
	cl.kill(2)
	waitFor(t, "node 1 to sweep node 3's names", 30*time.Second, func() bool {
		return a.sweptGone.Load() == int64(len(gone))
	})
	// The lease (3 s, renewed every 300 ms before the kill) expires 2.7 s after the kill
	// at the earliest, and the run must be found gone at two scans.
	if d := time.Since(killed); d < 2500*time.Millisecond {
		t.Errorf("node 3's names swept %v after the kill; its lease cannot have expired yet", d.Round(time.Millisecond))
	}
	for _, name := range gone {
		if st := state(name); st == msgPresent {
			t.Errorf("%q still in the KV after the sweep", name)
		}
	}
	if st := state("kept"); st != msgPresent {
		t.Errorf("the live node's name was removed (state %v)", st)
	}
	if n := b.sweptGone.Load(); n != 0 {
		t.Errorf("node 2 swept %d names; only node 1 (the lowest id) sweeps", n)
	}
	if err := claim(t, b, gone[0], conn(2, 2)); err != nil {
		t.Errorf("claim of a swept name = %v; want OK", err)
	}
}
