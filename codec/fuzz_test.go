package codec_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/switchboard/switchboard/codec"
)

// fuzzMaxFrame is the maximum frame length used by FuzzDecode. It is small so that the
// fuzzer reaches ErrFrameTooLarge with short inputs.
const fuzzMaxFrame = 4096

// decodeResult is what decoding a byte stream produces: the frames, in order, and the
// error that stopped decoding (ErrShort when the input ends inside a frame, nil when it
// ends exactly at a frame boundary).
type decodeResult struct {
	frames [][]byte // each frame re-encoded with Frame.Append
	err    error
}

// decodeAll decodes b frame by frame until it is used up or an error occurs.
func decodeAll(t *testing.T, b []byte) decodeResult {
	var res decodeResult
	for len(b) > 0 {
		f, n, err := codec.Decode(b, fuzzMaxFrame)
		if err != nil {
			res.err = err
			return res
		}
		checkFrame(t, f, b[:n])
		res.frames = append(res.frames, f.Append(nil))
		b = b[n:]
	}
	return res
}

// decodeStream feeds b to a decoder in two chunks split at i, the way a connection's
// inbound buffer grows: append the first chunk, decode all whole frames, discard them,
// append the second chunk, decode the rest.
func decodeStream(t *testing.T, b []byte, i int) decodeResult {
	var res decodeResult
	var buf []byte
	for _, chunk := range [][]byte{b[:i], b[i:]} {
		buf = append(buf, chunk...)
		for len(buf) > 0 {
			f, n, err := codec.Decode(buf, fuzzMaxFrame)
			if errors.Is(err, codec.ErrShort) {
				res.err = err // provisional: more input may complete the frame
				break
			}
			if err != nil {
				res.err = err
				return res // a protocol error ends the connection
			}
			res.err = nil
			checkFrame(t, f, buf[:n])
			res.frames = append(res.frames, f.Append(nil))
			buf = buf[n:]
		}
	}
	return res
}

// readStream reads b through a Reader over src, mapping the Reader's end-of-stream errors
// to Decode's: io.EOF to nil, io.ErrUnexpectedEOF to ErrShort.
func readStream(t *testing.T, src io.Reader, bufSize int) decodeResult {
	var res decodeResult
	fr := codec.NewReader(src, fuzzMaxFrame, bufSize)
	for {
		f, err := fr.Next()
		switch {
		case err == io.EOF:
			return res
		case err == io.ErrUnexpectedEOF:
			res.err = codec.ErrShort
			return res
		case err != nil:
			res.err = err
			return res
		}
		res.frames = append(res.frames, f.Append(nil))
	}
}

// checkFrame checks the properties every decoded frame must have.
func checkFrame(t *testing.T, f codec.Frame, raw []byte) {
	t.Helper()
	if got := f.Append(nil); !bytes.Equal(got, raw) {
		t.Fatalf("Frame.Append: got %x; want the input %x", got, raw)
	}
	if cap(f.Body) != len(f.Body) {
		t.Fatalf("Body: cap %d != len %d; appending to it would overwrite the next frame", cap(f.Body), len(f.Body))
	}
	if codec.ValidateBody(f.Type, f.Body) != nil {
		return
	}
	got, want := reencode(t, f)
	if !bytes.Equal(got, want) {
		t.Fatalf("typed re-encode of %v: got %x; want %x", f.Type, got, want)
	}
}

// reencode parses a valid frame with its type's Parse function and encodes it again with the
// matching Append function. It returns that and the bytes it must equal: the input frame
// with the header fields the Append function cannot express normalised (flags are zero for
// every type but SEND, whose flags are passed through; MESSAGE, INCOMING and GOAWAY have
// corr 0, since the server sends them unsolicited).
func reencode(t *testing.T, f codec.Frame) (got, want []byte) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("Parse of %v failed after ValidateBody passed: %v", f.Type, err)
		}
	}
	norm := f
	norm.Flags = 0
	switch f.Type {
	case codec.TypeHello:
		h, err := codec.ParseHello(f.Body)
		must(err)
		got = codec.AppendHello(nil, f.Corr, h.Version, string(h.Name), string(h.Token))
	case codec.TypeWelcome:
		w, err := codec.ParseWelcome(f.Body)
		must(err)
		got = codec.AppendWelcome(nil, f.Corr, w)
	case codec.TypeRegister, codec.TypeUnregister:
		name, err := codec.ParseName(f.Body)
		must(err)
		got = codec.AppendName(nil, f.Type, f.Corr, string(name))
	case codec.TypeSend:
		name, payload, err := codec.ParseSend(f.Body)
		must(err)
		norm.Flags = f.Flags
		got = codec.AppendSend(nil, f.Flags, f.Corr, string(name), payload)
	case codec.TypeRequest:
		name, timeout, payload, err := codec.ParseRequest(f.Body)
		must(err)
		got = codec.AppendRequest(nil, f.Corr, string(name), timeout, payload)
	case codec.TypeReply:
		token, payload, err := codec.ParseReply(f.Body)
		must(err)
		got = codec.AppendReply(nil, f.Corr, token, payload)
	case codec.TypeMessage:
		from, name, payload, err := codec.ParseMessage(f.Body)
		must(err)
		norm.Corr = 0
		got = codec.AppendMessage(nil, from, name, payload)
	case codec.TypeIncoming:
		token, from, name, payload, err := codec.ParseIncoming(f.Body)
		must(err)
		norm.Corr = 0
		got = codec.AppendIncoming(nil, token, from, name, payload)
	case codec.TypeError:
		e, err := codec.ParseError(f.Body)
		must(err)
		got = codec.AppendError(nil, f.Corr, e)
	case codec.TypeGoAway:
		g, err := codec.ParseGoAway(f.Body)
		must(err)
		norm.Corr = 0
		got = codec.AppendGoAway(nil, g)
	default: // opaque and empty bodies: the generic encoder carries every header field
		norm.Flags = f.Flags
		got = codec.AppendFrame(nil, f.Type, f.Flags, f.Corr, f.Body)
	}
	return got, norm.Append(nil)
}

// splitPoints returns the split positions to try for an input of n bytes: all of them for
// short inputs, an even spread plus the ends for long ones.
func splitPoints(n int) []int {
	if n <= 1024 {
		ps := make([]int, n+1)
		for i := range ps {
			ps[i] = i
		}
		return ps
	}
	ps := []int{0, 1, 2, 3, 4, 5, 9, 10, 11, n - 1, n}
	for i := 0; i < n; i += n / 256 {
		ps = append(ps, i)
	}
	return ps
}

func FuzzDecode(f *testing.F) {
	// The golden vectors, one by one and all concatenated (a realistic stream).
	var stream []byte
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.hex"))
	for _, path := range files {
		raw, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		b, err := parseHex(string(raw))
		if err != nil {
			f.Fatalf("%s: %v", path, err)
		}
		f.Add(b)
		stream = append(stream, b...)
	}
	f.Add(stream)
	f.Add([]byte{})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))                // garbage: a 1.2 GB length
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x01})                                 // huge length
	f.Add([]byte{0x00, 0x10, 0x00, 0x01})                                       // DefaultMaxFrame+1
	f.Add([]byte{0x00, 0x00, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00})         // tiny length
	f.Add([]byte{0x00, 0x00, 0x00, 0x00})                                       // zero length
	f.Add(header(6, codec.TypeOK, 0, 0))                                        // smallest frame
	f.Add(header(6, 0x42, 0xff, 0xffffffff))                                    // unknown type
	f.Add(append(header(6, codec.TypeGoodbye, 0, 0), 0, 0, 0))                  // frame + partial prefix
	f.Add(frame(codec.TypeSend, 0, 1, []byte{0x00}))                            // empty name
	f.Add(frame(codec.TypeError, 0, 1, []byte{0, 9, 0, 0, 0, 0, 0, 5, 'x', 0})) // truncated reason

	f.Fuzz(func(t *testing.T, b []byte) {
		whole := decodeAll(t, b)
		for _, i := range splitPoints(len(b)) {
			if got := decodeStream(t, b, i); !reflect.DeepEqual(got, whole) {
				t.Fatalf("split at %d: got %d frames, err %v; want %d frames, err %v",
					i, len(got.frames), got.err, len(whole.frames), whole.err)
			}
		}
		// A Reader agrees with Decode however the stream arrives and whatever its buffer.
		readers := []struct {
			name    string
			src     io.Reader
			bufSize int
		}{
			{"whole, buffer HeaderLen", bytes.NewReader(b), codec.HeaderLen},
			{"whole, default buffer", bytes.NewReader(b), 0},
			{"one byte", iotest.OneByteReader(bytes.NewReader(b)), 64},
			{"half", iotest.HalfReader(bytes.NewReader(b)), 64},
		}
		for _, r := range readers {
			if got := readStream(t, r.src, r.bufSize); !reflect.DeepEqual(got, whole) {
				t.Fatalf("Reader (%s): got %d frames, err %v; want %d frames, err %v",
					r.name, len(got.frames), got.err, len(whole.frames), whole.err)
			}
		}
		// A stream that ends inside a frame reports ErrShort; any other error came from the
		// length prefix, which FrameLen must report identically.
		if whole.err != nil && !errors.Is(whole.err, codec.ErrShort) {
			consumed := 0
			for _, fr := range whole.frames {
				consumed += len(fr)
			}
			if _, err := codec.FrameLen(b[consumed:], fuzzMaxFrame); err != whole.err {
				t.Fatalf("FrameLen after %d bytes: got %v; want %v", consumed, err, whole.err)
			}
		}
	})
}
