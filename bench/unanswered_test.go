package bench

import (
	"net"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/codec"
)

// TestUnansweredOnServerClose: a connection the server closes (a closing ERROR with corr
// 0, as a slow consumer gets) leaves its window in flight unanswered; the bench reports
// those as unanswered, not lost, and the closing ERROR, which answers no message, does
// not hide a loss. The fake server answers three ECHOs per connection, then sends ERROR
// SLOW_CONSUMER (closing) and closes: sent = received + unanswered, lost 0.
func TestUnansweredOnServerClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for id := uint64(1); ; id++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { closingFakeNode(nc, id, 3) })
		}
	})
	m, _ := runBench(t, inProcess(), "echo", "--addr", ln.Addr().String(), "--conns", "4",
		"--pipeline", "8", "--duration", "300ms", "--grace", "300ms")
	sent, recv := num(t, m, "messages.sent"), num(t, m, "messages.received")
	unanswered, lost := num(t, m, "messages.unanswered"), num(t, m, "messages.lost")
	if recv != 4*3 || unanswered != sent-recv || lost != 0 || num(t, m, "messages.errors_by_code.SLOW_CONSUMER") != 4 {
		t.Fatalf("sent %v, received %v, unanswered %v, lost %v, errors %v; want 12 received, the rest unanswered, none lost, 4 SLOW_CONSUMER",
			sent, recv, unanswered, lost, get(t, m, "messages.errors_by_code"))
	}
}

// closingFakeNode welcomes one connection, echoes its first n ECHOs, then closes it the way the
// server closes a slow consumer: ERROR SLOW_CONSUMER with corr 0 and the closing flag.
func closingFakeNode(nc net.Conn, id uint64, n int) {
	defer nc.Close()
	r := codec.NewReader(nc, 0, 0)
	if _, err := r.Next(); err != nil { // HELLO
		return
	}
	if _, err := nc.Write(codec.AppendWelcome(nil, 0, codec.Welcome{Version: codec.Version, ConnID: id,
		MaxFrame: codec.DefaultMaxFrame, MaxPending: 1000, ServerID: []byte("fake")})); err != nil {
		return
	}
	for answered := 0; answered < n; {
		f, err := r.Next()
		if err != nil {
			return
		}
		if f.Type == codec.TypeEcho {
			_, _ = nc.Write(codec.AppendFrame(nil, codec.TypeEchoReply, 0, f.Corr, f.Body))
			answered++
		}
	}
	_, _ = nc.Write(codec.AppendError(nil, 0, codec.ErrorBody{Code: codec.CodeSlowConsumer, Flags: codec.ErrFlagClosing, Reason: "fake"}))
}
