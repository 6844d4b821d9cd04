package cluster

import (
	"fmt"
	"testing"

	"github.com/switchboard/switchboard/codec"
)

// BenchmarkCrossNode measures traffic between two of three embedded nodes over loopback,
// raw clients on each side: a REQUEST/REPLY round trip (ns/op is the round trip), and
// SEND+ACK with 64 in flight (ns/op is the time per acknowledged message).
func BenchmarkCrossNode(b *testing.B) {
	tc := startCluster(b)
	xs := startServers(b, tc)
	payload := make([]byte, 100)
	for _, where := range []struct {
		name string
		to   xnode
	}{{"same-node", xs[0]}, {"cross-node", xs[1]}} {
		a, c := xs[0], where.to
		runCrossNode(b, xs, a, c, where.name, payload)
	}
}

// svcNames makes every sub-benchmark run's names unique: a name let go by the previous
// run may still be in the directory when the next registers it.
var svcRun int

func runCrossNode(b *testing.B, xs []xnode, a, c xnode, where string, payload []byte) {
	b.Run("request-reply/100B/"+where, func(b *testing.B) {
		svcRun++
		name := fmt.Sprintf("svc%d", svcRun)
		req := a.peer(b, "req")
		svc := c.peer(b, "svc")
		register(b, xs, svc, name, 1)
		done := make(chan struct{})
		go func() { // the responder echoes every INCOMING
			defer close(done)
			var out []byte
			for {
				f, err := svc.Read()
				if err != nil || f.Type != codec.TypeIncoming {
					return
				}
				tok, _, _, p, _ := codec.ParseIncoming(f.Body)
				out = codec.AppendReply(out[:0], 0, tok, p)
				if _, err := svc.Conn.Write(out); err != nil {
					return
				}
			}
		}()
		frame := codec.AppendRequest(nil, 1, name, 5000, payload)
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			req.Write(frame)
			expect(b, req, codec.TypeResponse, 1, 0)
		}
		b.StopTimer()
		_ = svc.Conn.Close()
		<-done
	})

	if where != "cross-node" {
		// On one node the receiver (one read per frame) falls behind, and becomes a
		// slow consumer: QUEUE_FULL, as designed. Across nodes the hop paces the sender.
		return
	}
	b.Run("send-ack-window64/100B/"+where, func(b *testing.B) {
		svcRun++
		name := fmt.Sprintf("sink%d", svcRun)
		snd := a.peer(b, "snd")
		sink := c.peer(b, "sink")
		register(b, xs, sink, name, 1)
		done := make(chan int)
		go func() { // the receiver reads b.N MESSAGEs (or fails to)
			n := 0
			for n < b.N {
				f, err := sink.Read()
				if err != nil || f.Type != codec.TypeMessage {
					break
				}
				n++
			}
			done <- n
		}()
		const window = 64
		frame := codec.AppendSend(nil, codec.FlagAck, 1, name, payload)
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		b.ResetTimer()
		sent, acked := 0, 0
		for acked < b.N {
			for sent < b.N && sent-acked < window {
				snd.Write(frame)
				sent++
			}
			expect(b, snd, codec.TypeOK, 1, 0)
			acked++
		}
		n := <-done // every OK'd message read: included in the time
		b.StopTimer()
		_ = sink.Conn.Close()
		if n != b.N {
			b.Errorf("receiver got %d messages; want %d (every OK)", n, b.N)
		}
	})
}
