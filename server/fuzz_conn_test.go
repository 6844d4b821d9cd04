package server

import (
	"bytes"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// fuzzBarrier is the corr of the PING written after a fuzz input: its PONG says the server
// has handled everything before it.
const fuzzBarrier = 0xfffffff0

// FuzzConnInput writes arbitrary bytes to a connection of a running server, after a
// HELLO when hello is odd, and holds the server to what PROTOCOL.md promises whatever a
// peer sends:
//   - every byte it writes back belongs to a whole frame;
//   - an ERROR with CLOSING is its last frame, and the connection then ends with a clean
//     EOF (the input it did not process is read away, not left to reset the close);
//   - it closes only after such an ERROR, or after a GOODBYE the input held;
//   - it never crashes (a panic on a loop ends the test binary), and a bystander
//     connection's ECHO is still answered after every input: one client cannot hurt
//     another.
//
// Inputs are written in one write with a PING behind them (when they end on a frame
// boundary), so the PONG marks the end of the server's work and no read waits for a
// timeout; after an input cut mid-frame the read ends after a short quiet period.
func FuzzConnInput(f *testing.F) {
	echo := codec.AppendFrame(nil, codec.TypeEcho, 0, 1, []byte("payload"))
	seeds := []struct {
		hello byte
		in    []byte
	}{
		{1, echo},
		{1, codec.AppendFrame(nil, codec.TypePing, 0, 2, nil)},
		{1, cat(codec.AppendName(nil, codec.TypeRegister, 3, "me"), codec.AppendSend(nil, codec.FlagAck, 4, "me", []byte("hi")))},
		{1, cat(codec.AppendName(nil, codec.TypeRegister, 3, "me"), codec.AppendRequest(nil, 5, "me", 50, []byte("q")))},
		{1, codec.AppendSend(nil, codec.FlagAck, 6, "witness", []byte("to the bystander"))},
		{1, codec.AppendRequest(nil, 7, "witness", 20, []byte("nobody answers"))},
		{1, codec.AppendName(nil, codec.TypeRegister, 8, "witness")},
		{1, codec.AppendReply(nil, 9, 0x0001000000000009, []byte("forged"))},
		{1, codec.AppendName(nil, codec.TypeUnregister, 10, "me")},
		{1, codec.AppendFrame(nil, 0x42, 0, 11, nil)},
		{1, codec.AppendFrame(nil, codec.TypeWelcome, 0, 12, nil)},
		{1, codec.AppendHello(nil, 13, codec.Version, "again", "")},
		{1, cat(codec.AppendFrame(nil, codec.TypeGoodbye, 0, 0, nil), echo)},
		// More than the 1 KiB read buffer after the frame that ends the connection: the
		// unread rest must not turn the close into a reset.
		{1, cat(codec.AppendFrame(nil, 0x42, 0, 16, nil), make([]byte, 4<<10))},
		{1, cat(codec.AppendFrame(nil, codec.TypeGoodbye, 0, 0, nil), bytes.Repeat(echo, 300))},
		{1, codec.AppendFrame(nil, codec.TypeGoodbye, 0, 0, []byte("bye"))},
		{1, codec.AppendFrame(nil, codec.TypeSend, 0, 14, []byte{9, 'a'})},
		{1, codec.AppendFrame(nil, codec.TypeRequest, 0, 15, []byte{1, 'x'})},
		{1, []byte{0, 0, 0, 3, 1, 2, 3}},
		{1, []byte{0xff, 0xff, 0xff, 0xff}},
		{1, echo[:len(echo)-2]},
		{0, codec.AppendHello(nil, 1, codec.Version, "fuzz", "")},
		{0, cat(codec.AppendHello(nil, 1, codec.Version, "fuzz", ""), echo)},
		{0, codec.AppendHello(nil, 1, 99, "fuzz", "")},
		{0, codec.AppendHello(nil, 1, codec.Version, "fuzz", "a token")},
		{0, echo},
		{0, []byte("GET / HTTP/1.1\r\n\r\n")},
		{0, []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")},
		{0, nil},
	}
	for _, sd := range seeds {
		f.Add(sd.hello, sd.in)
	}
	s := startServer(f, Config{ReadBufferCap: 1024, RequestTimeout: 50 * time.Millisecond})
	witness := registered(f, s, "witness")
	var wcorr uint32
	f.Fuzz(func(t *testing.T, hello byte, in []byte) {
		if len(in) > 32<<10 {
			return // one write lands whole in the server's socket on loopback
		}
		p := rawpeer.Dial(t, s.Addr().String())
		if hello&1 == 1 {
			p.Hello("fuzz", "")
		}
		whole, goodbye := scanInput(in, hello&1 == 1)
		out := in
		if whole {
			out = codec.AppendFrame(append([]byte(nil), in...), codec.TypePing, 0, fuzzBarrier, nil)
		}
		p.Write(out)
		checkConnOutput(t, p, whole, goodbye)

		wcorr++
		witness.T = t // it was made with f, which a fuzz target must not use
		witness.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, wcorr, []byte("still here")))
		for {
			f, err := witness.Read()
			if err != nil {
				t.Fatalf("the bystander after this input: %v", err)
			}
			if f.Type == codec.TypeEchoReply && f.Corr == wcorr {
				break
			}
			// A MESSAGE or INCOMING the input sent it is fine; an ERROR is not.
			if f.Type == codec.TypeError {
				e, _ := codec.ParseError(f.Body)
				t.Fatalf("the bystander got ERROR %v (%q)", e.Code, e.Reason)
			}
		}
	})
}

// scanInput decodes in as the server would see it: whether it ends on a frame boundary
// (so that a PING behind it is a frame of its own), and whether a well-formed GOODBYE
// comes before the first malformed frame (after which the server may close without an
// ERROR). Before WELCOME (established false) only a HELLO is accepted; a frame cut mid-way
// ends the scan.
func scanInput(in []byte, established bool) (whole, goodbye bool) {
	for len(in) > 0 {
		f, n, err := codec.Decode(in, codec.DefaultMaxFrame)
		if err != nil {
			return false, goodbye
		}
		in = in[n:]
		if !established {
			if f.Type != codec.TypeHello {
				return wholeFrames(in), goodbye
			}
			established = true
			continue
		}
		if f.Type == codec.TypeGoodbye && len(f.Body) == 0 {
			goodbye = true
		}
	}
	return true, goodbye
}

// wholeFrames reports whether b is a sequence of whole frames.
func wholeFrames(b []byte) bool {
	for len(b) > 0 {
		_, n, err := codec.Decode(b, codec.DefaultMaxFrame)
		if err != nil {
			return false
		}
		b = b[n:]
	}
	return true
}

// checkConnOutput reads what the server writes after a fuzz input until the barrier's
// PONG, or the close, or (input cut mid-frame) a quiet period, and checks it.
func checkConnOutput(t *testing.T, p *rawpeer.Peer, barrier, goodbye bool) {
	t.Helper()
	closing := false
	quiet := 10 * time.Second
	if !barrier {
		// Only a quiet period ends the read. A short one: it bounds what is checked (a
		// close after it goes unseen), not whether the checks hold, and the fuzzer
		// runs such inputs many times over while it minimises one.
		quiet = 20 * time.Millisecond
	}
	for {
		f, err := p.ReadTimeout(quiet)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			if !closing && !goodbye {
				t.Fatal("closed without an ERROR (CLOSING) and without a GOODBYE")
			}
			return
		case errors.Is(err, syscall.ECONNRESET):
			t.Fatal("the connection was reset; want a clean EOF")
		case errors.Is(err, os.ErrDeadlineExceeded) && !barrier && !closing:
			return // the input ends mid-frame: the server waits for the rest
		case errors.Is(err, io.ErrUnexpectedEOF):
			t.Fatal("the server closed in the middle of a frame")
		default:
			t.Fatalf("reading: %v (after an ERROR with CLOSING: %v)", err, closing)
		}
		if closing {
			t.Fatalf("%v after an ERROR with CLOSING", f.Type)
		}
		switch f.Type {
		case codec.TypeError:
			e, err := codec.ParseError(f.Body)
			if err != nil {
				t.Fatalf("malformed ERROR: %v", err)
			}
			if e.Flags&codec.ErrFlagClosing != 0 {
				closing, quiet = true, 10*time.Second
			}
		case codec.TypePong:
			if barrier && f.Corr == fuzzBarrier {
				return
			}
		}
	}
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}
