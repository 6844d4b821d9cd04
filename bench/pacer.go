package bench

import "time"

// pacer schedules open-loop sends at a fixed rate: send k is due at start + k·interval,
// whatever happened to the earlier ones. A sender asks Due for the sends whose time has
// come, writes them all in one batch, and sleeps until NextAt. Latency is measured from
// At(k), the intended time, so a stall in the server or the network shows up in the
// figures instead of silently lowering the offered load (coordinated omission).
//
// A pacer is owned by one goroutine.
type pacer struct {
	start    int64   // ns on the run clock
	interval float64 // ns between sends
	next     uint64  // index of the first send not yet handed out
	limit    uint64  // sends after this index are never due (0: unbounded)
}

// newPacer returns a pacer for rate sends per second starting at start (ns). rate must be
// positive.
func newPacer(start int64, rate float64) *pacer {
	return &pacer{start: start, interval: float64(time.Second) / rate}
}

// At returns the intended time of send k.
func (p *pacer) At(k uint64) int64 { return p.start + int64(float64(k)*p.interval) }

// NextAt returns the intended time of the next send not handed out yet.
func (p *pacer) NextAt() int64 { return p.At(p.next) }

// Due hands out the sends whose intended time is at or before now, at most maxN of them:
// it returns the index of the first and how many. The caller sends them in order; send
// first+i is due at At(first+i).
func (p *pacer) Due(now int64, maxN int) (first uint64, n int) {
	first = p.next
	for n < maxN && p.At(p.next) <= now && (p.limit == 0 || p.next < p.limit) {
		p.next++
		n++
	}
	return first, n
}

// timerSlack is how late a sleeping sender may wake without the lateness being blamed on
// the server: Go timers on this VM class overshoot by up to ~1 ms.
const timerSlack = 2 * time.Millisecond

// Stamp returns the timestamp that send k, built at now, carries: its intended time when
// it fell due while the sender was still blocked writing an earlier batch (lastWriteEnd:
// the server's back-pressure, which coordinated-omission correction must charge to the
// server); otherwise the intended time plus the sender's own wake-up lateness, up to
// timerSlack, which is the load generator's noise and not the server's.
func (p *pacer) Stamp(k uint64, now, lastWriteEnd int64) int64 {
	at := p.At(k)
	if at < lastWriteEnd {
		return at
	}
	return min(max(now, at), at+int64(timerSlack))
}
