package bench

import (
	"testing"
	"time"
)

func TestPacerSchedulesIntendedTimes(t *testing.T) {
	const start = int64(1_000_000_000)
	p := newPacer(start, 1000) // one send per millisecond
	ms := int64(time.Millisecond)
	steps := []struct {
		now       int64
		max       int
		wantFirst uint64
		wantN     int
	}{
		{start - 1, 10, 0, 0},         // nothing due before the start
		{start, 10, 0, 1},             // send 0 is due at the start
		{start + ms/2, 10, 1, 0},      // send 1 is not due yet
		{start + 5*ms, 10, 1, 5},      // a late wake-up hands out every missed send (1..5)
		{start + 100*ms, 3, 6, 3},     // capped batch
		{start + 100*ms, 1000, 9, 92}, // the rest up to send 100
	}
	for i, s := range steps {
		first, n := p.Due(s.now, s.max)
		if first != s.wantFirst || n != s.wantN {
			t.Fatalf("step %d: Due(%d) = %d,%d; want %d,%d", i, s.now-start, first, n, s.wantFirst, s.wantN)
		}
		for k := first; k < first+uint64(n); k++ {
			if got, want := p.At(k), start+int64(k)*ms; got != want {
				t.Fatalf("At(%d) = %d; want %d", k, got, want)
			}
		}
	}
	if got := p.NextAt(); got != start+101*ms {
		t.Fatalf("NextAt = %d; want %d", got-start, 101*ms)
	}
}

func TestPacerFractionalRate(t *testing.T) {
	p := newPacer(0, 3) // 333.33 ms apart: no drift over many sends
	if got, want := p.At(3000), int64(1000*time.Second); got < want-1000 || got > want+1000 {
		t.Fatalf("At(3000) = %d; want %d", got, want)
	}
}

func TestPacerStamp(t *testing.T) {
	p := newPacer(0, 1000)
	ms := int64(time.Millisecond)
	cases := []struct {
		name              string
		k                 uint64
		now, lastWriteEnd int64
		want              int64
	}{
		{"on time", 10, 10 * ms, 0, 10 * ms},
		{"woke late within slack: sender's noise", 10, 10*ms + ms/2, 0, 10*ms + ms/2},
		{"woke very late: lateness beyond slack counts", 10, 10*ms + 50*ms, 0, 10*ms + int64(timerSlack)},
		{"due while blocked writing: intended time", 10, 60 * ms, 59 * ms, 10 * ms},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Stamp(tc.k, tc.now, tc.lastWriteEnd); got != tc.want {
				t.Fatalf("Stamp = %d; want %d", got, tc.want)
			}
		})
	}
}
