package codec

import "encoding/binary"

// Frame is one decoded frame. Body aliases the decoder's input.
type Frame struct {
	Type  Type
	Flags Flags
	Corr  uint32 // correlation id; 0 asks for no answer, except HELLO, PING and ECHO, which are answered with corr 0
	Body  []byte
}

// FrameLen validates the length prefix at the start of b and returns the total size of the
// frame (prefix included). It needs only PrefixLen bytes, so an oversized frame is rejected
// before any of its body is buffered. maxFrame <= 0 means DefaultMaxFrame.
func FrameLen(b []byte, maxFrame int) (int, error) {
	if len(b) < PrefixLen {
		return 0, ErrShort
	}
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	n := binary.BigEndian.Uint32(b)
	if n < MinLen {
		return 0, ErrFrameTooSmall
	}
	if uint64(n) > uint64(maxFrame) {
		return 0, ErrFrameTooLarge
	}
	return PrefixLen + int(n), nil
}

// Decode decodes the first frame in b and returns it with the number of bytes it occupies.
// It returns ErrShort (and n == 0) when b holds only part of a valid frame, and
// ErrFrameTooSmall or ErrFrameTooLarge as soon as the length prefix is readable. Decode does
// not look inside the body; use the Parse* function of the frame's type for that.
func Decode(b []byte, maxFrame int) (f Frame, n int, err error) {
	n, err = FrameLen(b, maxFrame)
	if err != nil {
		return Frame{}, 0, err
	}
	if len(b) < n {
		return Frame{}, 0, ErrShort
	}
	f.Type = Type(b[4])
	f.Flags = Flags(b[5])
	f.Corr = binary.BigEndian.Uint32(b[6:])
	f.Body = b[HeaderLen:n:n]
	return f, n, nil
}

// AppendHeader appends a frame header with a placeholder length and returns the extended
// slice and the offset of the frame; append the body, then call FinishFrame(dst, start).
func AppendHeader(dst []byte, t Type, flags Flags, corr uint32) ([]byte, int) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(t), byte(flags))
	dst = binary.BigEndian.AppendUint32(dst, corr)
	return dst, start
}

// FinishFrame writes the length prefix of the frame that starts at dst[start].
func FinishFrame(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-PrefixLen))
	return dst
}

// AppendFrame appends a whole frame with an opaque body.
func AppendFrame(dst []byte, t Type, flags Flags, corr uint32, body []byte) []byte {
	dst, start := AppendHeader(dst, t, flags, corr)
	dst = append(dst, body...)
	return FinishFrame(dst, start)
}

// Append appends f encoded.
func (f Frame) Append(dst []byte) []byte { return AppendFrame(dst, f.Type, f.Flags, f.Corr, f.Body) }

// appendStr8 appends a u8 length and s; s longer than 255 bytes is truncated, which only a
// programmer can cause (names are validated on input, reasons are server-written).
func appendStr8[S ~string | ~[]byte](dst []byte, s S) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	dst = append(dst, byte(len(s)))
	return append(dst, s...)
}

// reader walks a body. Every method is a no-op once an error was seen.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() uint8 {
	if r.bad || len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if r.bad || len(r.b) < 2 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) u32() uint32 {
	if r.bad || len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if r.bad || len(r.b) < 8 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) str8() []byte {
	n := int(r.u8())
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// rest returns the remaining bytes (the payload).
func (r *reader) rest() []byte {
	if r.bad {
		return nil
	}
	v := r.b
	r.b = nil
	return v
}

func (r *reader) err() error {
	if r.bad {
		return ErrBadBody
	}
	return nil
}

// end fails unless the body was consumed exactly.
func (r *reader) end() error {
	if r.bad || len(r.b) != 0 {
		return ErrBadBody
	}
	return nil
}
