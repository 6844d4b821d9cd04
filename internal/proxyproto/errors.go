package proxyproto

import "errors"

var (
	// ErrShort means the input is a prefix of what may be a valid header: read more.
	ErrShort = errors.New("proxyproto: header incomplete")
	// ErrNotProxy means the input does not start with a PROXY signature.
	ErrNotProxy = errors.New("proxyproto: no PROXY protocol signature")
	// ErrInvalid means the input starts with a PROXY signature but the header is
	// malformed; errors wrapping it say how.
	ErrInvalid = errors.New("proxyproto: invalid header")
)
