package bench

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// probeWindow is the width of the windows the overload probe's p99 is computed over.
const probeWindow = 100 * time.Millisecond

// probeResult is the overload probe's story: a light ECHO flow on one connection that
// runs through the calm baseline, the spike and the recovery phase. Its messages and
// their refusals are counted here only, not in the run's messages.
type probeResult struct {
	Sent          uint64            `json:"sent"`
	Received      uint64            `json:"received"`
	ErrorsByCode  map[string]uint64 `json:"errors_by_code"` // the probe's ECHOs refused by ERROR
	BaselineP99Us float64           `json:"baseline_p99_us"`
	ThresholdUs   float64           `json:"threshold_us"`
	SpikeStartMs  int64             `json:"spike_start_ms"`
	SpikeEndMs    int64             `json:"spike_end_ms"`
	RecoveryS     float64           `json:"recovery_s"` // -1: not back within the recovery phase
	Windows       []probeSummary    `json:"windows"`
}

// probeSummary is one probe window.
type probeSummary struct {
	StartMs int64   `json:"start_ms"` // since go
	Count   uint64  `json:"count"`
	P99Us   float64 `json:"p99_us"`
}

// overload runs the overload timeline for this part: probe only for Baseline; then the
// spike (this part's share of Conns connect as fast as Ramp allows and drive closed-loop
// pipelined ECHO, or open-loop at Rate) for Duration; then probe only for Recover.
func (p *part) overload(ctx context.Context, probe *sconn) (*probeResult, connCounts) {
	cfg := p.cfg
	spikeStart := p.goAt + int64(cfg.Baseline)
	p.stopAt = spikeStart + int64(cfg.Duration)
	p.hardAt = p.stopAt + int64(cfg.Grace)
	end := p.stopAt + int64(cfg.Recover)

	var pr *probeResult
	probeDone := make(chan struct{})
	if probe != nil {
		go func() {
			defer close(probeDone)
			pr = p.runProbe(ctx, probe, spikeStart, end)
		}()
	} else {
		close(probeDone)
	}
	t := time.NewTimer(time.Duration(spikeStart - p.clk.now()))
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	idx := make([]int, p.spec.N)
	for i := range idx {
		idx[i] = p.spec.First + i
	}
	conns, cc := p.connect(ctx, idx, cfg.Ramp/float64(p.spec.Parts))
	p.load(ctx, conns)
	for _, c := range conns {
		c.close()
	}
	<-probeDone
	return pr, cc
}

// runProbe sends ProbeRate ECHOs per second on c from goAt until end and sums up their
// latencies (from the intended send time) in probeWindow windows.
func (p *part) runProbe(ctx context.Context, c *sconn, spikeStart, end int64) *probeResult {
	cfg := p.cfg
	nwin := int((end - p.goAt + int64(probeWindow) - 1) / int64(probeWindow))
	wins := make([]*Histogram, nwin)
	pr := &probeResult{SpikeStartMs: (spikeStart - p.goAt) / 1e6, SpikeEndMs: (p.stopAt - p.goAt) / 1e6,
		ErrorsByCode: map[string]uint64{}}
	var refused uint64 // the reader's
	var sent atomic.Uint64
	readerDone := make(chan struct{})
	hard := end + int64(cfg.Grace)
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Now()) })
	defer stop()
	go func() {
		defer close(readerDone)
		_ = c.nc.SetReadDeadline(p.clk.at(hard))
		for {
			f, err := c.fr.Next()
			if err != nil {
				return
			}
			now := p.clk.now()
			if f.Type == codec.TypeError {
				pr.ErrorsByCode[errorCode(f.Body).String()]++
				refused++
				if now >= end && pr.Received+refused >= sent.Load() {
					return
				}
				continue
			}
			if f.Type != codec.TypeEchoReply || len(f.Body) < 8 {
				continue
			}
			ts := int64(binary.BigEndian.Uint64(f.Body))
			w := int((ts - p.goAt) / int64(probeWindow))
			if w >= 0 && w < nwin {
				if wins[w] == nil {
					wins[w] = NewHistogram()
				}
				wins[w].Record(time.Duration(now - ts))
			}
			pr.Received++
			if now >= end && pr.Received+refused >= sent.Load() {
				return
			}
		}
	}()
	pc := newPacer(p.goAt, cfg.ProbeRate)
	var buf []byte
	payload := make([]byte, 16)
	var corr uint32
	var lastWriteEnd int64
	for ctx.Err() == nil {
		now := p.clk.now()
		if pc.NextAt() >= end {
			break
		}
		first, n := pc.Due(now, 64)
		if n == 0 {
			t := time.NewTimer(time.Duration(pc.NextAt() - now))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		buf = buf[:0]
		for i := range n {
			binary.BigEndian.PutUint64(payload, uint64(pc.Stamp(first+uint64(i), now, lastWriteEnd)))
			corr++
			buf = codec.AppendFrame(buf, codec.TypeEcho, 0, corr, payload)
		}
		_ = c.nc.SetWriteDeadline(p.clk.at(hard))
		if _, err := c.nc.Write(buf); err != nil {
			break
		}
		lastWriteEnd = p.clk.now()
		sent.Add(uint64(n))
	}
	// The reader may be waiting for the last answers; it stops at hard at the latest.
	<-readerDone
	pr.Sent = sent.Load()
	p.summarizeProbe(pr, wins, spikeStart)
	return pr
}

// Recovery rule: after the spike, the probe has recovered at the first window from which
// recoverRun consecutive windows have a p99 within the threshold:
// max(recoverFactor × baseline p99, baseline p99 + recoverSlack). The slack keeps a
// 60 µs baseline from demanding 90 µs on a noisy two-core machine.
const (
	recoverFactor = 1.5
	recoverSlack  = 200 * time.Microsecond
	recoverRun    = 3
)

func (p *part) summarizeProbe(pr *probeResult, wins []*Histogram, spikeStart int64) {
	base := NewHistogram()
	spikeWin := int((spikeStart - p.goAt) / int64(probeWindow))
	endWin := int((p.stopAt - p.goAt + int64(probeWindow) - 1) / int64(probeWindow))
	pr.Windows = make([]probeSummary, len(wins))
	for i, h := range wins {
		pr.Windows[i].StartMs = int64(i) * probeWindow.Milliseconds()
		if h != nil {
			pr.Windows[i].Count = h.Count()
			pr.Windows[i].P99Us = us(h.Percentile(99))
			if i < spikeWin {
				base.Merge(h)
			}
		}
	}
	b := base.Percentile(99)
	thr := max(time.Duration(float64(b)*recoverFactor), b+recoverSlack)
	pr.BaselineP99Us, pr.ThresholdUs = us(b), us(thr)
	pr.RecoveryS = -1
	for i := endWin; i < len(wins); i++ {
		ok := true
		for j := i; j < min(i+recoverRun, len(wins)); j++ {
			w := pr.Windows[j]
			if w.Count == 0 || w.P99Us > us(thr) {
				ok = false
				break
			}
		}
		if ok {
			pr.RecoveryS = max(0, float64(pr.Windows[i].StartMs-pr.SpikeEndMs)/1000)
			break
		}
	}
}

// us converts a duration to microseconds, truncated to 0.1 µs.
func us(d time.Duration) float64 { return float64(d/100) / 10 }
