package shard

import (
	"runtime"
	"sync"
	"testing"
)

func TestRingCapacity(t *testing.T) {
	tests := []struct{ in, want int }{
		{-1, 2}, {0, 2}, {1, 2}, {2, 2}, {3, 4}, {4, 4}, {5, 8}, {1000, 1024}, {1024, 1024}, {1025, 2048},
	}
	for _, tt := range tests {
		if got := NewRing[int](tt.in).Cap(); got != tt.want {
			t.Errorf("NewRing(%d).Cap() = %d; want %d", tt.in, got, tt.want)
		}
	}
}

func TestRingFillDrain(t *testing.T) {
	for _, capacity := range []int{2, 8, 64} {
		r := NewRing[int](capacity)
		// Several laps, so sequence numbers wrap around the buffer.
		for lap := range 3 {
			for i := range capacity {
				if !r.Push(lap*1000 + i) {
					t.Fatalf("cap %d lap %d: Push(%d) = false; want true", capacity, lap, i)
				}
				if got := r.Len(); got != i+1 {
					t.Fatalf("cap %d: Len() = %d; want %d", capacity, got, i+1)
				}
			}
			if r.Push(-1) {
				t.Fatalf("cap %d: Push on full ring = true; want false", capacity)
			}
			if got := r.Len(); got != capacity {
				t.Fatalf("cap %d: Len() on full = %d; want %d", capacity, got, capacity)
			}
			for i := range capacity {
				v, ok := r.Pop()
				if !ok || v != lap*1000+i {
					t.Fatalf("cap %d: Pop() = %d, %v; want %d, true", capacity, v, ok, lap*1000+i)
				}
			}
			if v, ok := r.Pop(); ok {
				t.Fatalf("cap %d: Pop on empty = %d, true; want false", capacity, v)
			}
			if got := r.Len(); got != 0 {
				t.Fatalf("cap %d: Len() on empty = %d; want 0", capacity, got)
			}
		}
	}
}

func TestRingInterleavedFIFO(t *testing.T) {
	r := NewRing[int](4)
	next, want := 0, 0
	for step := range 1000 {
		// Push 0–3 then pop 0–3, driven by a fixed pattern.
		for range step % 4 {
			if r.Push(next) {
				next++
			}
		}
		for range (step / 4) % 4 {
			if v, ok := r.Pop(); ok {
				if v != want {
					t.Fatalf("Pop() = %d; want %d", v, want)
				}
				want++
			}
		}
	}
	for {
		v, ok := r.Pop()
		if !ok {
			break
		}
		if v != want {
			t.Fatalf("Pop() = %d; want %d", v, want)
		}
		want++
	}
	if want != next {
		t.Errorf("popped %d values; want %d", want, next)
	}
}

func TestRingPopZeroesCell(t *testing.T) {
	r := NewRing[*int](2)
	x := 1
	r.Push(&x)
	r.Pop()
	for i := range r.buf {
		if r.buf[i].v != nil {
			t.Errorf("cell %d retains %p after Pop; want nil", i, r.buf[i].v)
		}
	}
}

func TestRingNoAllocs(t *testing.T) {
	type msg struct {
		id  ConnID
		buf []byte
	}
	r := NewRing[msg](16)
	b := make([]byte, 8)
	allocs := testing.AllocsPerRun(1000, func() {
		if !r.Push(msg{1, b}) {
			panic("push failed")
		}
		if _, ok := r.Pop(); !ok {
			panic("pop failed")
		}
	})
	if allocs != 0 {
		t.Errorf("Push+Pop allocs = %v; want 0", allocs)
	}
}

// TestRingMultiProducer checks that with many producers nothing is lost or
// duplicated and each producer's values arrive in the order it pushed them.
func TestRingMultiProducer(t *testing.T) {
	const (
		producers = 4
		perProd   = 100_000
	)
	type item struct{ p, seq int }
	r := NewRing[item](256)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := 0; i < perProd; {
				if r.Push(item{p, i}) {
					i++
				} else {
					runtime.Gosched() // full: let the consumer run
				}
			}
		})
	}
	next := make([]int, producers)
	for got := 0; got < producers*perProd; {
		v, ok := r.Pop()
		if !ok {
			runtime.Gosched()
			continue
		}
		if v.p < 0 || v.p >= producers {
			t.Fatalf("got producer %d; want [0,%d)", v.p, producers)
		}
		if v.seq != next[v.p] {
			t.Fatalf("producer %d: got seq %d; want %d", v.p, v.seq, next[v.p])
		}
		next[v.p]++
		got++
	}
	wg.Wait()
	if v, ok := r.Pop(); ok {
		t.Errorf("extra value %+v after all were received", v)
	}
	if r.Len() != 0 {
		t.Errorf("Len() = %d; want 0", r.Len())
	}
}
