package codec

import "errors"

// Decoding errors. Every one of them means the peer broke the protocol; the server answers
// with the ErrorCode given by CodeOf and closes the connection.
var (
	// ErrShort means the buffer does not hold a whole frame yet; read more and retry.
	// It is not a protocol error.
	ErrShort = errors.New("codec: short buffer")
	// ErrFrameTooSmall means the length field is below HeaderLen-4 (6).
	ErrFrameTooSmall = errors.New("codec: frame length below header size")
	// ErrFrameTooLarge means the length field exceeds the configured maximum.
	ErrFrameTooLarge = errors.New("codec: frame too large")
	// ErrBadBody means a frame body does not match the layout of its type.
	ErrBadBody = errors.New("codec: malformed frame body")
	// ErrBadName means a name is empty or longer than MaxNameLen.
	ErrBadName = errors.New("codec: bad name")
)

// CodeOf maps a decoding error to the ERROR code sent to the peer.
func CodeOf(err error) ErrorCode {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return CodeFrameTooLarge
	case errors.Is(err, ErrFrameTooSmall), errors.Is(err, ErrBadBody), errors.Is(err, ErrBadName):
		return CodeBadFrame
	default:
		return CodeInternal
	}
}
