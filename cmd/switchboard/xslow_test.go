package main

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// TestCrossNodeSlowConsumer: the slow-consumer promise across nodes. A receiver on node
// 8 stops reading while a sender on node 7 (its SENDs cross nodes) and one on node 8
// SEND+ACK 16 KiB messages to it until they are refused. Every SEND is answered once, OK
// or QUEUE_FULL (the target's node decides: ACK means accepted for delivery to the
// target's loop, PROTOCOL.md); what was answered OK is exactly what the receiver reads,
// in order, as whole frames, when it reads again; then ERROR SLOW_CONSUMER (closing)
// and a clean EOF.
func TestCrossNodeSlowConsumer(t *testing.T) {
	for _, tc := range []struct {
		name         string
		size, window int
	}{
		{"16KiB", 16 << 10, 8},
		{"4KiB, 128 in flight", 4 << 10, 128},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The caps make the receiver a slow consumer, not the timeout: the timeout only
			// bounds how long its socket may take nothing before it is reset, and the
			// receiver reads only once both senders are answered, which took over the
			// 4 × 1 s of a 1 s timeout once in a CI run under -race (a reset, the stream cut).
			_, _, addr7, addr8 := startPair(t, "xslow", "--max-pending", "500", "--max-pending-bytes", "1048576",
				"--slow-consumer-timeout", "30s", "--socket-send-buffer", "32768", "--tick-interval", "10ms")
			sink := rawpeer.Dial(t, addr8)
			sink.Hello("sink", "")
			sink.Write(codec.AppendName(nil, codec.TypeRegister, 1, "sink"))
			sink.Expect(codec.TypeOK)
			far, near := rawpeer.Dial(t, addr7), rawpeer.Dial(t, addr8)
			far.Hello("far", "")
			near.Hello("near", "")
			knownOn(t, far, sink, "sink")

			sink.StopReading()
			senders := []*rawpeer.Peer{far, near}
			tallies := make([]rawpeer.Tally, len(senders))
			var wg sync.WaitGroup
			for i, p := range senders {
				wg.Go(func() { tallies[i] = p.SendAcked("sink", tc.size, tc.window, 4000) })
			}
			wg.Wait()
			for i, tl := range tallies {
				if tl.Err != nil {
					t.Fatalf("sender %d: %v", i, tl.Err)
				}
				if tl.Sent != len(tl.OK)+tl.QueueFull+tl.NoRoute || tl.QueueFull == 0 || tl.NoRoute != 0 {
					t.Fatalf("sender %d: sent %d, OK %d, QUEUE_FULL %d, NO_ROUTE %d; want every SEND answered, refusals QUEUE_FULL",
						i, tl.Sent, len(tl.OK), tl.QueueFull, tl.NoRoute)
				}
				t.Logf("sender %d: sent %d, OK %d, QUEUE_FULL %d", i, tl.Sent, len(tl.OK), tl.QueueFull)
			}

			r := sink.ReadToEOF()
			for i, p := range senders {
				if got, want := r.Corrs[p.ConnID], tallies[i].OK; !slices.Equal(got, want) {
					t.Errorf("sender %d: the receiver read %d MESSAGEs, %d were acknowledged; first difference at %d",
						i, len(got), len(want), rawpeer.FirstDiff(got, want))
				}
			}
			rawpeer.CheckClosedCleanly(t, r)
		})
	}
}

// knownOn polls from (SEND+ACK of "probe" to name, every 10 ms, up to 10 s) until name's
// node has told from's node about it (NO_ROUTE until then: the watch), and returns the
// MESSAGE the first accepted one brought to, name's owner.
func knownOn(t *testing.T, from, to *rawpeer.Peer, name string) codec.Frame {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for corr := uint32(1 << 30); ; corr++ {
		from.Write(codec.AppendSend(nil, codec.FlagAck, corr, name, []byte("probe")))
		f, err := from.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == codec.TypeOK && f.Corr == corr {
			return to.Expect(codec.TypeMessage)
		}
		if e, _ := codec.ParseError(f.Body); f.Type != codec.TypeError || e.Code != codec.CodeNoRoute || time.Now().After(deadline) {
			t.Fatalf("SEND+ACK: got %v corr %d code %v; want OK (or NO_ROUTE until the name is known)", f.Type, f.Corr, e.Code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
