package server

import (
	"bytes"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// TestCloseWithUnreadInputIsGraceful: when the server closes a connection on its own
// (a bad frame, a frame before HELLO, GOODBYE) while input it has not read waits in the
// socket, the peer gets what was written for it and then a clean EOF, not a reset.
// Closing a socket with unread input makes the kernel send a reset, and a reset may
// destroy what the peer has not read yet (on Linux the peer still reads it, then
// ECONNRESET; other stacks drop it): the ERROR that explains the close among it, which
// PROTOCOL.md promises before every close. A read buffer of 1 KiB makes gnet read only
// the head of the 16 KiB sent in one write, so the rest is unread when the server closes.
func TestCloseWithUnreadInputIsGraceful(t *testing.T) {
	s := startServer(t, Config{ReadBufferCap: 1024})
	junk := bytes.Repeat([]byte{0xee}, 16<<10)
	tests := []struct {
		name  string
		hello bool
		first []byte
		want  codec.ErrorCode // 0: no ERROR (GOODBYE closes silently)
	}{
		{"unknown type", true, codec.AppendFrame(nil, 0x42, 0, 1, nil), codec.CodeUnknownType},
		{"frame before HELLO", false, codec.AppendFrame(nil, codec.TypeEcho, 0, 1, nil), codec.CodeHelloRequired},
		{"GOODBYE", true, codec.AppendFrame(nil, codec.TypeGoodbye, 0, 0, nil), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := rawpeer.Dial(t, s.Addr().String())
			if tt.hello {
				p.Hello("p", "")
				// An answer queued before the close must arrive too.
				p.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 7, []byte("before")))
			}
			p.Write(append(tt.first, junk...))
			_ = p.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(p.Conn)
			if errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("reset after %d bytes; want a clean EOF", len(got))
			} else if err != nil {
				t.Fatalf("%v after %d bytes; want a clean EOF", err, len(got))
			}
			var types []codec.Type
			var last codec.Frame
			for len(got) > 0 {
				f, n, err := codec.Decode(got, 1<<20)
				if err != nil {
					t.Fatalf("a cut frame before the close: %v", err)
				}
				types, last, got = append(types, f.Type), f, got[n:]
			}
			if tt.hello && (len(types) == 0 || types[0] != codec.TypeEchoReply) {
				t.Errorf("frames %v; want the ECHO_REPLY first", types)
			}
			if tt.want == 0 {
				if len(types) != 1 {
					t.Errorf("frames %v; want only the ECHO_REPLY", types)
				}
				return
			}
			if last.Type != codec.TypeError {
				t.Fatalf("frames %v; want an ERROR last", types)
			}
			if e, _ := codec.ParseError(last.Body); e.Code != tt.want {
				t.Errorf("ERROR %v; want %v", e.Code, tt.want)
			}
		})
	}
	waitFor(t, "the connections to close", func() bool { return s.Stats().Connections == 0 })
}
