package client

import (
	"errors"
	"io"

	"github.com/switchboard/switchboard/codec"
)

// frameReader reads whole frames from a stream, checking each length against max before
// buffering the body. Frames returned by next alias its buffer until the next call.
// Owned by one goroutine.
type frameReader struct {
	src  io.Reader
	max  int
	buf  []byte
	r, w int   // unread bytes are buf[r:w]
	err  error // sticky read error, returned once the buffered frames are consumed
}

const readBufSize = 64 << 10

func newFrameReader(src io.Reader, max int) *frameReader {
	return &frameReader{src: src, max: max, buf: make([]byte, readBufSize)}
}

func (fr *frameReader) next() (codec.Frame, error) {
	for {
		f, n, err := codec.Decode(fr.buf[fr.r:fr.w], fr.max)
		if err == nil {
			fr.r += n
			return f, nil
		}
		if !errors.Is(err, codec.ErrShort) {
			return codec.Frame{}, err
		}
		if fr.err != nil {
			if fr.err == io.EOF && fr.r != fr.w {
				return codec.Frame{}, io.ErrUnexpectedEOF
			}
			return codec.Frame{}, fr.err
		}
		need := codec.HeaderLen
		if fr.w-fr.r >= codec.PrefixLen {
			need, _ = codec.FrameLen(fr.buf[fr.r:fr.w], fr.max) // validated by Decode above
		}
		if fr.r == fr.w {
			fr.r, fr.w = 0, 0
		} else if len(fr.buf)-fr.r < need || fr.w == len(fr.buf) {
			fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
			fr.r = 0
		}
		if need > len(fr.buf) {
			nb := make([]byte, need)
			fr.w = copy(nb, fr.buf[fr.r:fr.w])
			fr.r = 0
			fr.buf = nb
		}
		n, err = fr.src.Read(fr.buf[fr.w:])
		fr.w += n
		if err != nil {
			fr.err = err
		}
	}
}
