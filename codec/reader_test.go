package codec_test

import (
	"bytes"
	"io"
	"os"
	"slices"
	"strconv"
	"testing"
	"testing/iotest"

	"github.com/switchboard/switchboard/codec"
)

// loopReader serves b over and over, filling each Read completely, like a socket that
// always has data. b holds whole frames, so every pass starts at a frame boundary.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.b[l.off:])
		n += c
		l.off = (l.off + c) % len(l.b)
	}
	return n, nil
}

// failReader fails the test if anything reads from it.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("read past the length prefix of a frame that should have been rejected")
	return 0, io.EOF
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// chunkReader returns its chunks one per Read, then err.
type chunkReader struct {
	chunks [][]byte
	err    error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, c.err
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

// readerStream is a mix of frames: empty bodies, a body bigger than the small buffers
// used below, and typical messages.
func readerStream() ([]byte, []codec.Frame) {
	want := []codec.Frame{
		{Type: codec.TypeOK, Corr: 1, Body: []byte{}},
		{Type: codec.TypeResponse, Corr: 2, Body: bytes.Repeat([]byte("r"), 3000)},
		{Type: codec.TypeMessage, Flags: codec.FlagAck, Corr: 3, Body: []byte("payload")},
		{Type: codec.TypePong, Corr: 4, Body: []byte{}},
		{Type: codec.TypeEchoReply, Corr: 5, Body: bytes.Repeat([]byte("e"), 100)},
	}
	var stream []byte
	for _, f := range want {
		stream = f.Append(stream)
	}
	return stream, want
}

// readAll reads frames until an error and returns copies of them with that error.
func readAll(fr *codec.Reader) ([]codec.Frame, error) {
	var got []codec.Frame
	for {
		f, err := fr.Next()
		if err != nil {
			return got, err
		}
		f.Body = bytes.Clone(f.Body)
		if f.Body == nil {
			f.Body = []byte{}
		}
		got = append(got, f)
	}
}

func equalFrames(a, b []codec.Frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Flags != b[i].Flags || a[i].Corr != b[i].Corr || !bytes.Equal(a[i].Body, b[i].Body) {
			return false
		}
	}
	return true
}

func TestReaderSplits(t *testing.T) {
	stream, want := readerStream()
	sources := map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(stream) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"data+EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
	}
	for _, bufSize := range []int{codec.HeaderLen, 64, 4096, 0} {
		for name, src := range sources {
			t.Run(name+"/buf="+strconv.Itoa(bufSize), func(t *testing.T) {
				got, err := readAll(codec.NewReader(src(), 0, bufSize))
				if err != io.EOF {
					t.Errorf("final error %v; want io.EOF", err)
				}
				if !equalFrames(got, want) {
					t.Errorf("got %d frames %v; want %d frames %v", len(got), got, len(want), want)
				}
			})
		}
	}
	// Two reads split at every byte: the second read completes whatever the first cut.
	for cut := range len(stream) + 1 {
		src := &chunkReader{chunks: [][]byte{bytes.Clone(stream[:cut]), bytes.Clone(stream[cut:])}, err: io.EOF}
		got, err := readAll(codec.NewReader(src, 0, 64))
		if err != io.EOF || !equalFrames(got, want) {
			t.Fatalf("cut at %d: got %d frames, err %v; want %d frames, io.EOF", cut, len(got), err, len(want))
		}
	}
}

func TestReaderErrors(t *testing.T) {
	stream, _ := readerStream()
	hdr := func(n uint32) []byte {
		return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, 0}
	}
	tests := []struct {
		name   string
		src    io.Reader
		max    int
		frames int // frames returned before the error
		want   error
	}{
		{"empty stream", bytes.NewReader(nil), 0, 0, io.EOF},
		{"EOF at a boundary", bytes.NewReader(stream), 0, 5, io.EOF},
		{"EOF mid-prefix", bytes.NewReader(stream[:2]), 0, 0, io.ErrUnexpectedEOF},
		{"EOF mid-header", bytes.NewReader(stream[:7]), 0, 0, io.ErrUnexpectedEOF},
		{"EOF mid-body", bytes.NewReader(stream[:codec.HeaderLen+50]), 0, 1, io.ErrUnexpectedEOF},
		{"EOF mid-body one byte", iotest.OneByteReader(bytes.NewReader(stream[:len(stream)-1])), 0, 4, io.ErrUnexpectedEOF},
		{"too large", bytes.NewReader(stream), 1000, 1, codec.ErrFrameTooLarge},
		{"too large first", bytes.NewReader(hdr(codec.DefaultMaxFrame + 1)), 0, 0, codec.ErrFrameTooLarge},
		{"too small", bytes.NewReader(hdr(codec.MinLen - 1)), 0, 0, codec.ErrFrameTooSmall},
		{"read error after frames", &chunkReader{chunks: [][]byte{stream}, err: os.ErrDeadlineExceeded}, 0, 5, os.ErrDeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(codec.NewReader(tt.src, tt.max, 64))
			if err != tt.want {
				t.Errorf("error %v; want %v (unwrapped)", err, tt.want)
			}
			if len(got) != tt.frames {
				t.Errorf("got %d frames before the error; want %d", len(got), tt.frames)
			}
		})
	}
}

// TestReaderRejectsBeforeBody checks that an oversized frame is refused from its length
// prefix alone: nothing after the prefix is read, and the error repeats.
func TestReaderRejectsBeforeBody(t *testing.T) {
	prefix := []byte{0, 0x10, 0, 1} // 1 MiB + 1
	for _, bufSize := range []int{codec.HeaderLen, 0} {
		t.Run("buf="+strconv.Itoa(bufSize), func(t *testing.T) {
			fr := codec.NewReader(io.MultiReader(bytes.NewReader(prefix), failReader{t}), 0, bufSize)
			for range 2 {
				if _, err := fr.Next(); err != codec.ErrFrameTooLarge {
					t.Fatalf("Next = %v; want codec.ErrFrameTooLarge", err)
				}
			}
		})
	}
	t.Run("one byte", func(t *testing.T) {
		big := codec.AppendFrame(nil, codec.TypeResponse, 0, 1, make([]byte, 2000))
		cr := &countReader{r: iotest.OneByteReader(bytes.NewReader(big))}
		if _, err := codec.NewReader(cr, 1000, 0).Next(); err != codec.ErrFrameTooLarge {
			t.Fatalf("Next = %v; want codec.ErrFrameTooLarge", err)
		}
		if cr.n != codec.PrefixLen {
			t.Errorf("read %d bytes; want %d (the prefix only)", cr.n, codec.PrefixLen)
		}
	})
}

// TestReaderResumesAfterError checks that a read error (a deadline) is reported once and
// that a partly read frame is completed by the next call.
func TestReaderResumesAfterError(t *testing.T) {
	frame := codec.AppendFrame(nil, codec.TypeEchoReply, 0, 9, []byte("hello"))
	src := &chunkReader{chunks: [][]byte{frame[:7]}, err: os.ErrDeadlineExceeded}
	fr := codec.NewReader(src, 0, 0)
	if _, err := fr.Next(); err != os.ErrDeadlineExceeded {
		t.Fatalf("Next = %v; want os.ErrDeadlineExceeded", err)
	}
	if got := fr.Buffered(); got != 7 {
		t.Errorf("Buffered = %d after the timeout; want 7", got)
	}
	src.chunks, src.err = [][]byte{frame[7:]}, io.EOF
	f, err := fr.Next()
	if err != nil || f.Corr != 9 || string(f.Body) != "hello" {
		t.Fatalf("Next = corr %d %q, %v; want corr 9 \"hello\"", f.Corr, f.Body, err)
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Errorf("Next at the end = %v; want io.EOF", err)
	}
}

func TestReaderGrows(t *testing.T) {
	small := codec.AppendFrame(nil, codec.TypePong, 0, 1, nil)
	big := codec.AppendFrame(nil, codec.TypeResponse, 0, 2, bytes.Repeat([]byte("b"), 5000))
	stream := slices.Concat(small, big, small, big, small)
	fr := codec.NewReader(iotest.HalfReader(bytes.NewReader(stream)), 0, 16)
	for i, want := range []int{0, 5000, 0, 5000, 0} {
		f, err := fr.Next()
		if err != nil || len(f.Body) != want {
			t.Fatalf("frame %d: %d body bytes, %v; want %d", i, len(f.Body), err, want)
		}
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Errorf("Next at the end = %v; want io.EOF", err)
	}
}

func TestReaderComplete(t *testing.T) {
	a := codec.AppendFrame(nil, codec.TypePong, 0, 1, []byte("abc"))
	b := codec.AppendFrame(nil, codec.TypePong, 0, 2, []byte("defg"))
	// One read delivers a and half of b; the next one the rest of b.
	src := &chunkReader{chunks: [][]byte{slices.Concat(a, b[:8]), b[8:]}, err: io.EOF}
	fr := codec.NewReader(src, 0, 0)
	if fr.Complete() || fr.Buffered() != 0 {
		t.Fatalf("fresh Reader: Complete %v, Buffered %d; want false, 0", fr.Complete(), fr.Buffered())
	}
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if fr.Complete() || fr.Buffered() != 8 {
		t.Fatalf("after a with half of b buffered: Complete %v, Buffered %d; want false, 8", fr.Complete(), fr.Buffered())
	}
	if f, err := fr.Next(); err != nil || f.Corr != 2 {
		t.Fatalf("Next = corr %d, %v; want corr 2", f.Corr, err)
	}
	src.chunks = [][]byte{slices.Concat(a, a, b[:3])}
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if !fr.Complete() || fr.Buffered() != len(a)+3 {
		t.Fatalf("with a and 3 bytes of b buffered: Complete %v, Buffered %d; want true, %d", fr.Complete(), fr.Buffered(), len(a)+3)
	}
}
