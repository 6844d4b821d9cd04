package server

import (
	"bytes"
	"errors"
	"io"
	"net"
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

// TestErrorCloseWaitsForUnreadOutput: a peer that stops reading its answers and then
// sends a bad frame still gets every answer, then the ERROR as a whole frame, then EOF.
// Closing at once would have cut the output that gnet still buffered (the socket had not
// taken it): the peer would have read a cut frame, or a stream ending without the ERROR.
// The close waits as a slow consumer's does, and a name it held is NO_ROUTE meanwhile.
func TestErrorCloseWaitsForUnreadOutput(t *testing.T) {
	s := startServer(t, Config{MaxPendingBytes: 256 << 20, SlowConsumerTimeout: time.Minute})
	// Both on one loop: every SEND acknowledged before the bad frame is queued for the
	// reader before it, so the reader must get exactly as many MESSAGEs as OKs were given.
	sender := connectOn(t, s, "sender", 0)
	p := connectOn(t, s, "p", 0)
	p.Write(codec.AppendName(nil, codec.TypeRegister, 1, "reader"))
	p.Expect(codec.TypeOK)
	// 16 MiB of ECHOs, more than the kernel's socket buffers hold, so that gnet buffers
	// the rest of the answers, then a frame of an unknown type.
	const n, size = 256, 64 << 10
	echo := codec.AppendFrame(nil, codec.TypeEcho, 0, 2, make([]byte, size))
	in := bytes.Repeat(echo, n)
	in = codec.AppendFrame(in, 0x42, 0, 3, nil)
	wrote := make(chan error, 1)
	go func() {
		_ = p.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := p.Conn.Write(in)
		wrote <- err
	}()
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
	// Until the server reads the bad frame, SENDs to its name are accepted (and queued
	// behind the ECHO_REPLYs); then refused with NO_ROUTE, while the close waits.
	oks := 0
	waitFor(t, "the server to read the bad frame", func() bool {
		sender.Write(codec.AppendSend(nil, codec.FlagAck, 9, "reader", []byte("x")))
		f, err := sender.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == codec.TypeOK {
			oks++
			return false
		}
		if f.Type != codec.TypeError {
			t.Fatalf("SEND+ACK answered %v", f.Type)
		}
		e, _ := codec.ParseError(f.Body)
		if e.Code != codec.CodeNoRoute {
			t.Fatalf("SEND to the closing connection: ERROR %v; want NO_ROUTE", e.Code)
		}
		return true
	})
	var replies, messages int
	var last codec.Frame
	for {
		f, err := p.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d ECHO_REPLYs: %v; want every answer, the ERROR, then EOF", replies, err)
		}
		switch f.Type {
		case codec.TypeEchoReply:
			if len(f.Body) != size {
				t.Fatalf("ECHO_REPLY of %d bytes; want %d", len(f.Body), size)
			}
			replies++
		case codec.TypeMessage: // the SENDs accepted before the bad frame was read
			messages++
		case codec.TypeError:
		default:
			t.Fatalf("unexpected %v", f.Type)
		}
		last = f
	}
	if replies != n {
		t.Errorf("%d ECHO_REPLYs; want %d", replies, n)
	}
	if messages != oks {
		t.Errorf("%d MESSAGEs for %d SENDs acknowledged", messages, oks)
	}
	if last.Type != codec.TypeError {
		t.Fatalf("last frame %v; want the ERROR", last.Type)
	}
	if e, _ := codec.ParseError(last.Body); e.Code != codec.CodeUnknownType || e.Flags&codec.ErrFlagClosing == 0 {
		t.Errorf("last ERROR %v flags %v; want UNKNOWN_TYPE with CLOSING", e.Code, e.Flags)
	}
}

// TestCloseDrainedIsGraceful: a refused connection closed outright (every lingerer busy)
// reads away what the client sent before closing, so the client reads the ERROR and then
// EOF, not a reset.
func TestCloseDrainedIsGraceful(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Write(bytes.Repeat([]byte{'h'}, 4<<10)); err != nil {
		t.Fatal(err)
	}
	var one [1]byte // the input has arrived; the rest stays unread
	if _, err := io.ReadFull(srv, one[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Write([]byte("ERROR")); err != nil {
		t.Fatal(err)
	}
	closeDrained(srv)
	_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(cli)
	if err != nil || string(got) != "ERROR" {
		t.Fatalf("read %q, %v; want the ERROR, then EOF", got, err)
	}
}

// TestIdleCloseLetsNamesGo: a connection closed for its idle timeout while its output
// still waits for the socket (the client stopped reading and sending: most likely gone)
// lets its names go at the close, not once the socket has taken everything or been
// reset a slow-consumer timeout later: its client, reconnecting, registers them again
// at once. Before, REGISTER got NAME_TAKEN for up to the slow-consumer timeout (the
// graceful closes let names go at once already). A SEND to the name then reaches the
// new owner, and what was written to the old connection is still delivered: every
// answer, then the TIMEOUT, then EOF, and nothing else.
func TestIdleCloseLetsNamesGo(t *testing.T) {
	s := startServer(t, Config{IdleTimeout: 500 * time.Millisecond, MaxPendingBytes: 256 << 20, SlowConsumerTimeout: time.Minute})
	p := registered(t, s, "idler")
	// 16 MiB of ECHOs, more than the kernel's socket buffers hold, left unread: gnet
	// buffers the rest of the answers when the idle timeout comes.
	const n, size = 256, 64 << 10
	in := bytes.Repeat(codec.AppendFrame(nil, codec.TypeEcho, 0, 2, make([]byte, size)), n)
	_ = p.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := p.Conn.Write(in); err != nil {
		t.Fatalf("write: %v", err)
	}
	q := connect(t, s, "again")
	corr := uint32(0)
	waitFor(t, "the idle connection's name to be free", func() bool {
		corr++
		q.Write(codec.AppendName(nil, codec.TypeRegister, corr, "idler"))
		f, err := q.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == codec.TypeOK {
			return true
		}
		if e, _ := codec.ParseError(f.Body); f.Type != codec.TypeError || e.Code != codec.CodeNameTaken {
			t.Fatalf("REGISTER answered %v %v; want OK or NAME_TAKEN", f.Type, e.Code)
		}
		return false
	})
	// What a sender is told and who gets it: the name's new owner, not the connection
	// still closing.
	snd := connect(t, s, "sender")
	snd.Write(codec.AppendSend(nil, codec.FlagAck, 7, "idler", []byte("after")))
	expectOutcomes(t, snd, outcome{typ: codec.TypeOK, corr: 7})
	if f := q.Expect(codec.TypeMessage); !bytes.HasSuffix(f.Body, []byte("after")) {
		t.Errorf("the new owner's MESSAGE body %q; want the payload sent", f.Body)
	}
	got := p.ReadToEOF()
	if len(got.Corrs) != 0 {
		t.Errorf("the closing connection got MESSAGEs %v after its close began", got.Corrs)
	}
	if !errors.Is(got.End, io.EOF) {
		t.Errorf("after %d ECHO_REPLYs: %v; want every answer, the TIMEOUT, then EOF", got.Echos, got.End)
	}
	if got.Echos != n {
		t.Errorf("%d ECHO_REPLYs; want %d", got.Echos, n)
	}
	if e, _ := codec.ParseError(got.Last.Body); got.Last.Type != codec.TypeError || e.Code != codec.CodeTimeout {
		t.Errorf("last frame %v %v; want ERROR TIMEOUT", got.Last.Type, e.Code)
	}
}
