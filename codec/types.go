package codec

import "strconv"

// Version is the protocol version this package speaks, sent in HELLO and WELCOME.
const Version uint16 = 1

// Frame layout constants.
const (
	// PrefixLen is the size of the length prefix.
	PrefixLen = 4
	// HeaderLen is the size of the whole fixed header: len, type, flags, corr.
	HeaderLen = 10
	// MinLen is the smallest legal value of the length field (type+flags+corr).
	MinLen = HeaderLen - PrefixLen
	// DefaultMaxFrame is the default maximum of the length field (1 MiB).
	DefaultMaxFrame = 1 << 20
	// MaxNameLen is the longest name (REGISTER, SEND, REQUEST, client names).
	MaxNameLen = 255
)

// Type is a frame type. Client-to-server types are below 0x80, server-to-client types have
// the high bit set.
type Type uint8

// Client-to-server frame types.
const (
	TypeHello      Type = 0x01 // u16 version | str8 client name | str8 token
	TypePing       Type = 0x02 // opaque payload, echoed in PONG
	TypeEcho       Type = 0x03 // opaque payload, echoed in ECHO_REPLY
	TypeRegister   Type = 0x04 // name (the whole body)
	TypeUnregister Type = 0x05 // name (the whole body)
	TypeSend       Type = 0x06 // str8 name | payload
	TypeRequest    Type = 0x07 // str8 name | u32 timeout ms | payload
	TypeReply      Type = 0x08 // u64 reply token | payload
	TypeGoodbye    Type = 0x09 // empty
)

// Server-to-client frame types.
const (
	TypeWelcome   Type = 0x81 // u16 version | u64 conn id | u32 max frame | u32 ping ms | u32 max pending | str8 server id
	TypePong      Type = 0x82 // the PING payload
	TypeEchoReply Type = 0x83 // the ECHO payload
	TypeOK        Type = 0x84 // empty
	TypeError     Type = 0x85 // u16 code | u32 retry-after ms | u8 flags | str8 reason | u8 n | n × str8 address
	TypeMessage   Type = 0x86 // u64 from conn | str8 from name | payload
	TypeIncoming  Type = 0x87 // u64 reply token | u64 from conn | str8 from name | payload
	TypeResponse  Type = 0x88 // the REPLY payload
	TypeGoAway    Type = 0x89 // u32 reconnect-after ms | str8 reason | u8 n | n × str8 address
)

var typeNames = [256]string{
	TypeHello: "HELLO", TypePing: "PING", TypeEcho: "ECHO", TypeRegister: "REGISTER",
	TypeUnregister: "UNREGISTER", TypeSend: "SEND", TypeRequest: "REQUEST", TypeReply: "REPLY",
	TypeGoodbye: "GOODBYE", TypeWelcome: "WELCOME", TypePong: "PONG", TypeEchoReply: "ECHO_REPLY",
	TypeOK: "OK", TypeError: "ERROR", TypeMessage: "MESSAGE", TypeIncoming: "INCOMING",
	TypeResponse: "RESPONSE", TypeGoAway: "GOAWAY",
}

// String returns the protocol name of t, or "TYPE_0xNN" for an unknown type.
func (t Type) String() string {
	if s := typeNames[t]; s != "" {
		return s
	}
	// Two digits always, as documented: 0x0a is "TYPE_0x0a", not "TYPE_0xa".
	const hex = "0123456789abcdef"
	return "TYPE_0x" + string([]byte{hex[t>>4], hex[t&0x0f]})
}

// Known reports whether t is a defined frame type.
func (t Type) Known() bool { return typeNames[t] != "" }

// Flags is the frame flags byte. Bits not defined for a type must be sent as zero and are
// ignored by receivers.
type Flags uint8

const (
	// FlagAck on SEND asks for an OK (same corr) once the message is queued to the target
	// connection; failures are reported with ERROR either way when corr != 0.
	FlagAck Flags = 0x01
)

// ErrorFlags is the flags byte inside an ERROR body.
type ErrorFlags uint8

const (
	// ErrFlagClosing means the server closes the connection right after this ERROR.
	ErrFlagClosing ErrorFlags = 0x01
	// ErrFlagReconnect means the client may reconnect (after retry-after).
	ErrFlagReconnect ErrorFlags = 0x02
	// ErrFlagTryOther means the client should prefer another node (addresses may follow).
	ErrFlagTryOther ErrorFlags = 0x04
)

// ErrorCode is the u16 code of an ERROR frame.
type ErrorCode uint16

// Error codes. docs/PROTOCOL.md says when each is sent and what a client should do.
const (
	CodeBadFrame           ErrorCode = 1  // malformed frame or body; connection closed
	CodeFrameTooLarge      ErrorCode = 2  // length above the maximum; connection closed
	CodeUnsupportedVersion ErrorCode = 3  // HELLO version not spoken; connection closed
	CodeUnauthorized       ErrorCode = 4  // wrong or missing token; connection closed
	CodeHandshakeTimeout   ErrorCode = 5  // no HELLO in time; connection closed
	CodeUnknownType        ErrorCode = 6  // unknown frame type; connection closed
	CodeBusy               ErrorCode = 7  // connection limit or overload (the "503")
	CodeRateLimited        ErrorCode = 8  // per-connection or node rate exceeded (the "429")
	CodeQueueFull          ErrorCode = 9  // a bounded queue towards the target is full
	CodeSlowConsumer       ErrorCode = 10 // this connection did not read its output; closed
	CodeCircuitOpen        ErrorCode = 11 // circuit breaker open; fail fast
	CodeNoRoute            ErrorCode = 12 // no connection owns the name
	CodeNameTaken          ErrorCode = 13 // REGISTER of a name owned by another connection
	CodeTimeout            ErrorCode = 14 // REQUEST got no REPLY in time
	CodeShuttingDown       ErrorCode = 15 // the node is draining
	CodeInternal           ErrorCode = 16 // server bug; report it
	CodeHelloRequired      ErrorCode = 17 // a frame other than HELLO before WELCOME; closed
	CodeNotOwner           ErrorCode = 18 // UNREGISTER of a name this connection does not own
	CodeForbidden          ErrorCode = 19 // the user may not REGISTER, SEND to or REQUEST this name
	CodeUnavailable        ErrorCode = 20 // the cluster directory cannot decide now; retry after retry-after
)

var codeNames = [...]string{
	CodeBadFrame: "BAD_FRAME", CodeFrameTooLarge: "FRAME_TOO_LARGE",
	CodeUnsupportedVersion: "UNSUPPORTED_VERSION", CodeUnauthorized: "UNAUTHORIZED",
	CodeHandshakeTimeout: "HANDSHAKE_TIMEOUT", CodeUnknownType: "UNKNOWN_TYPE", CodeBusy: "BUSY",
	CodeRateLimited: "RATE_LIMITED", CodeQueueFull: "QUEUE_FULL", CodeSlowConsumer: "SLOW_CONSUMER",
	CodeCircuitOpen: "CIRCUIT_OPEN", CodeNoRoute: "NO_ROUTE", CodeNameTaken: "NAME_TAKEN",
	CodeTimeout: "TIMEOUT", CodeShuttingDown: "SHUTTING_DOWN", CodeInternal: "INTERNAL",
	CodeHelloRequired: "HELLO_REQUIRED", CodeNotOwner: "NOT_OWNER",
	CodeForbidden: "FORBIDDEN", CodeUnavailable: "UNAVAILABLE",
}

// MaxCode is the highest defined error code; useful for sizing per-code counter arrays.
const MaxCode = CodeUnavailable

// String returns the protocol name of c, or "CODE_N" for an unknown code.
func (c ErrorCode) String() string {
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return "CODE_" + strconv.FormatUint(uint64(c), 10)
}

// ParseErrorCode returns the code named s (for example "QUEUE_FULL").
func ParseErrorCode(s string) (ErrorCode, bool) {
	for i, n := range codeNames {
		if n != "" && n == s {
			return ErrorCode(i), true
		}
	}
	return 0, false
}
