package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// readerWithBacklog registers a reader (a 16 KiB receive window) as "r" and has a sender
// send it msgs acknowledged messages of 1 KiB, which the test leaves unread: all but what
// the reader's window took wait in the server's kernel. It returns both peers and the
// server's and the reader's ends of the reader's connection.
func readerWithBacklog(t *testing.T, s *Server, msgs int) (r, snd *rawpeer.Peer, server, peer netip.AddrPort) {
	t.Helper()
	const size = 1024
	r = rawpeer.DialSmallWindow(t, s.Addr().String())
	r.Hello("reader", "")
	r.Write(codec.AppendName(nil, codec.TypeRegister, 1, "r"))
	expectOutcomes(t, r, outcome{typ: codec.TypeOK, corr: 1})
	snd = connect(t, s, "sender")
	if tl := snd.SendAcked("r", size, max(msgs, 1), msgs); len(tl.OK) != msgs || tl.Err != nil {
		t.Fatalf("sender: %d OK of %d (%d QUEUE_FULL, %d NO_ROUTE), %v", len(tl.OK), msgs, tl.QueueFull, tl.NoRoute, tl.Err)
	}
	server = s.Addr().(*net.TCPAddr).AddrPort()
	peer = r.Conn.LocalAddr().(*net.TCPAddr).AddrPort()
	waitFor(t, "the reader's messages to wait in the server's kernel", func() bool {
		st, ok := tcpSocket(t, server, peer)
		return ok && st.txQueue >= (msgs-32)*size
	})
	return r, snd, server, peer
}

// checkReceived fails unless the reader got all msgs messages of snd, in order, then a
// last frame of type last, then a clean end of stream.
func checkReceived(t *testing.T, got rawpeer.Received, snd *rawpeer.Peer, msgs int, last codec.Type) {
	t.Helper()
	if want := seq(msgs); fmt.Sprint(got.Corrs[snd.ConnID]) != fmt.Sprint(want) {
		t.Errorf("the reader got %d of the %d acknowledged messages (first missing at %d)",
			len(got.Corrs[snd.ConnID]), msgs, rawpeer.FirstDiff(got.Corrs[snd.ConnID], want))
	}
	if got.Last.Type != last {
		t.Errorf("last frame %v; want %v", got.Last.Type, last)
	}
	if !errors.Is(got.End, io.EOF) {
		t.Errorf("stream ended with %v; want a clean EOF", got.End)
	}
}

// TestCloseKeepsUnsentOutput: the server closes a connection (a drain's batch, the
// client's GOODBYE, an ERROR for a frame it refuses), and the client then sends
// something, as a busy client that has not read its GOAWAY or ERROR does. It must still
// get every message acknowledged to its senders, then the close's last frame, then a
// clean end of stream, not a reset; its name is free while its socket lingers.
//
// Before, the socket was closed as soon as gnet had handed everything to the kernel: the
// kernel kept sending for the closed socket, but the client's next bytes reached a
// socket nobody read any more, the kernel answered with a reset and threw away what it
// had not sent: with output in the kernel, 233 of 256 acknowledged messages (all but
// what the client's receive buffer held), and the ERROR. On a real network that is
// whatever was in flight. With nothing left to send the test passes on the old code too:
// the reset then needs the client's bytes to arrive before gnet's close, which runs later
// in a task of the loop, a race this test does not force (docs/BENCHMARKS.md, "A whole
// node drained: closes that do not reset", counts those resets).
func TestCloseKeepsUnsentOutput(t *testing.T) {
	for _, how := range []struct {
		name string
		// close makes the server close r's connection; it returns what to wait for
		// once the reader has closed too.
		close func(t *testing.T, s *Server, r *rawpeer.Peer) (closed func())
		last  codec.Type // the close's last frame (0: the last MESSAGE, if any)
	}{
		{"drain", func(t *testing.T, s *Server, _ *rawpeer.Peer) func() {
			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				done <- s.Drain(ctx, 5*time.Second)
			}()
			return func() {
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("Drain = %v", err)
					}
				case <-time.After(15 * time.Second):
					t.Fatal("Drain still running 15 s after its clients closed")
				}
			}
		}, codec.TypeGoAway},
		{"goodbye", func(t *testing.T, s *Server, r *rawpeer.Peer) func() {
			r.Write(codec.AppendFrame(nil, codec.TypeGoodbye, 0, 0, nil))
			return func() { waitFor(t, "the server to close its side", func() bool { return s.Stats().Connections == 0 }) }
		}, 0},
		{"error", func(t *testing.T, s *Server, r *rawpeer.Peer) func() {
			r.Write(codec.AppendFrame(nil, codec.Type(0x7f), 0, 2, nil))
			return func() { waitFor(t, "the server to close its side", func() bool { return s.Stats().Connections == 0 }) }
		}, codec.TypeError},
	} {
		for _, msgs := range []int{256, 0} {
			t.Run(fmt.Sprintf("%s/%d-in-kernel", how.name, msgs), func(t *testing.T) {
				s := startServer(t, Config{})
				r, snd, server, peer := readerWithBacklog(t, s, msgs)
				closed := how.close(t, s, r)
				waitFor(t, "the server to close the reader's connection", func() bool {
					st, ok := tcpSocket(t, server, peer)
					return !ok || st.state != tcpEstablished
				})
				// Closing for good, though its socket is still open: its name is free already.
				if id, ok := s.dir.Lookup([]byte("r")); ok {
					t.Errorf("name r still owned by %v while its connection closes", id)
				}
				r.Write(codec.AppendFrame(nil, codec.TypePing, 0, 3, nil)) // not having read the close yet
				got := r.ReadToEOF()
				last := how.last
				if last == 0 && msgs > 0 {
					last = codec.TypeMessage
				}
				checkReceived(t, got, snd, msgs, last)
				if how.last == codec.TypeError {
					if e, err := codec.ParseError(got.Last.Body); err != nil || e.Code != codec.CodeUnknownType {
						t.Errorf("last frame ERROR %+v (%v); want UNKNOWN_TYPE", e, err)
					}
				}
				_ = r.Conn.Close()
				_ = snd.Conn.Close()
				closed()
			})
		}
	}
}

func seq(n int) []uint32 {
	s := make([]uint32, n)
	for i := range s {
		s[i] = uint32(i + 1)
	}
	return s
}

// tcpEstablished is TCP_ESTABLISHED in /proc/net/tcp's st column.
const tcpEstablished = 1

type tcpState struct {
	state   int
	txQueue int // bytes not yet acknowledged by the peer (sent or not)
}

// tcpSocket finds the IPv4 socket local → remote in /proc/net/tcp.
func tcpSocket(t testing.TB, local, remote netip.AddrPort) (tcpState, bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	hex := func(a netip.AddrPort) string {
		ip := a.Addr().As4() // /proc/net/tcp shows the address as a little-endian word
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port())
	}
	l, r := hex(local), hex(remote)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != l || f[2] != r {
			continue
		}
		st, err1 := strconv.ParseInt(f[3], 16, 32)
		q, _, _ := strings.Cut(f[4], ":")
		tx, err2 := strconv.ParseInt(q, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad /proc/net/tcp line %q", line)
		}
		return tcpState{state: int(st), txQueue: int(tx)}, true
	}
	return tcpState{}, false
}
