package bench

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// TestProbeErrorsApart: the overload probe's refused ECHOs are counted in its own result,
// not in the run's errors, whose lost = sent − received − errors leaves the probe out.
func TestProbeErrorsApart(t *testing.T) {
	cli, srv := net.Pipe()
	t.Cleanup(func() { _ = cli.Close(); _ = srv.Close() })
	go func() {
		// The server: BUSY for every even corr, the echo for the others.
		fr := codec.NewReader(srv, 0, 0)
		for {
			f, err := fr.Next()
			if err != nil {
				return
			}
			if f.Type != codec.TypeEcho {
				continue
			}
			out := codec.AppendFrame(nil, codec.TypeEchoReply, 0, f.Corr, f.Body)
			if f.Corr%2 == 0 {
				out = codec.AppendError(nil, f.Corr, codec.ErrorBody{Code: codec.CodeBusy})
			}
			if _, err := srv.Write(out); err != nil {
				return
			}
		}
	}()
	p := &part{cfg: &Config{ProbeRate: 200, Grace: 300 * time.Millisecond}, clk: newClock(), win: newAtomicHistogram()}
	p.goAt = p.clk.now()
	spikeStart := p.goAt + int64(100*time.Millisecond)
	p.stopAt = p.goAt + int64(200*time.Millisecond)
	c := &sconn{nc: cli, fr: codec.NewReader(cli, 0, 0)}
	pr := p.runProbe(context.Background(), c, spikeStart, p.goAt+int64(300*time.Millisecond))
	if pr.Sent < 10 {
		t.Fatalf("probe sent %d ECHOs in 300 ms at 200/s", pr.Sent)
	}
	if busy := pr.ErrorsByCode["BUSY"]; busy != pr.Sent/2 || pr.Received+busy != pr.Sent {
		t.Errorf("probe sent %d, received %d, errors %v; want half refused BUSY, the rest received",
			pr.Sent, pr.Received, pr.ErrorsByCode)
	}
	if m := p.errorMap(); len(m) != 0 || p.sent.Load() != 0 || p.received.Load() != 0 {
		t.Errorf("run's counts: sent %d, received %d, errors %v; want the probe kept apart",
			p.sent.Load(), p.received.Load(), m)
	}
}
