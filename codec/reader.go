package codec

import (
	"errors"
	"io"
)

// DefaultReadBufSize is the buffer size NewReader uses when given bufSize <= 0.
const DefaultReadBufSize = 64 << 10

// maxEmptyReads bounds consecutive (0, nil) reads before Next gives up with
// io.ErrNoProgress, as bufio.Reader does.
const maxEmptyReads = 100

// Reader cuts whole frames out of a byte stream (a net.Conn, a file, a test pipe) with
// its own buffer and without allocating per frame.
//
// Each length prefix is checked against the maximum as soon as its 4 bytes are buffered,
// before any of the body is read, so a peer cannot make the Reader buffer more than
// PrefixLen+maxFrame bytes. A frame larger than the buffer grows the buffer to fit it (at
// least doubling it, never past PrefixLen+maxFrame), and the buffer keeps that size.
//
// A Reader is not safe for concurrent use: one goroutine owns it. Buffered and Complete
// may be called only by that goroutine, between calls to Next.
type Reader struct {
	src  io.Reader
	max  int
	buf  []byte
	r, w int   // unread bytes are buf[r:w]
	err  error // read error not yet returned; reported once the buffered frames are used up
}

// NewReader returns a Reader that reads frames from src. maxFrame bounds the length field
// as in FrameLen (<= 0 means DefaultMaxFrame); bufSize is the initial buffer size in bytes
// (<= 0 means DefaultReadBufSize; values below HeaderLen are raised to it).
func NewReader(src io.Reader, maxFrame, bufSize int) *Reader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	if bufSize <= 0 {
		bufSize = DefaultReadBufSize
	}
	bufSize = max(bufSize, HeaderLen)
	return &Reader{src: src, max: maxFrame, buf: make([]byte, bufSize)}
}

// SetMax changes the bound on the length field for the frames after those already
// returned (<= 0 means DefaultMaxFrame): a client reads the server's WELCOME under a
// small bound, then the frames after it under the max_frame the WELCOME announced.
func (r *Reader) SetMax(maxFrame int) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	r.max = maxFrame
}

// Next returns the next frame. The frame's Body aliases the Reader's buffer and is valid
// only until the following call to Next: copy what must be kept.
//
// Errors:
//   - ErrFrameTooSmall or ErrFrameTooLarge (unwrapped) when the length prefix is invalid;
//     the prefix stays buffered, so every later call returns the same error.
//   - io.EOF when the stream ends at a frame boundary, io.ErrUnexpectedEOF when it ends
//     inside a frame.
//   - any other error from src as it came (a net.Error timeout stays a net.Error).
//
// Frames buffered before a read error are returned first. A read error is reported once
// and then forgotten, as bufio.Reader does: after a deadline timeout a caller may set a
// new deadline and call Next again, and a partly read frame resumes where it stopped.
func (r *Reader) Next() (Frame, error) {
	for {
		f, n, err := Decode(r.buf[r.r:r.w], r.max)
		if err == nil {
			r.r += n
			return f, nil
		}
		if !errors.Is(err, ErrShort) {
			return Frame{}, err
		}
		if r.err != nil {
			err := r.err
			r.err = nil
			if err == io.EOF && r.r != r.w {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
		r.fill()
	}
}

// fill makes room for the frame at buf[r:w] and reads once from src. It records a read
// error in r.err.
func (r *Reader) fill() {
	need := PrefixLen
	if r.w-r.r >= PrefixLen {
		need, _ = FrameLen(r.buf[r.r:r.w], r.max) // Next has validated it
	}
	// Slide the partial frame to the front so the read gets the whole free space; it is
	// shorter than one frame, so the copy costs at most a frame's bytes per refill.
	if r.r > 0 {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	}
	if need > len(r.buf) {
		nb := make([]byte, min(max(need, 2*len(r.buf)), PrefixLen+r.max))
		r.w = copy(nb, r.buf[:r.w])
		r.buf = nb
	}
	for range maxEmptyReads {
		n, err := r.src.Read(r.buf[r.w:])
		r.w += n
		if err != nil {
			r.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.err = io.ErrNoProgress
}

// Buffered returns the number of bytes read from src and not yet returned by Next.
func (r *Reader) Buffered() int { return r.w - r.r }

// Complete reports whether another whole frame with a valid length is already buffered,
// so that the next call to Next returns it without reading from src (and so without
// blocking). A caller that batches writes flushes them when Complete is false, before
// the read that might block.
func (r *Reader) Complete() bool {
	n, err := FrameLen(r.buf[r.r:r.w], r.max)
	return err == nil && r.w-r.r >= n
}
