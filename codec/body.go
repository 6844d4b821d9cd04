package codec

import "encoding/binary"

// Hello is the body of HELLO. Name and Token alias the frame.
type Hello struct {
	Version uint16
	Name    []byte // client name, shown to peers as the sender of its messages; may be empty
	Token   []byte // shared secret; empty when the server has none
}

// ParseHello parses a HELLO body.
func ParseHello(body []byte) (Hello, error) {
	r := reader{b: body}
	h := Hello{Version: r.u16(), Name: r.str8(), Token: r.str8()}
	return h, r.end()
}

// AppendHello appends a HELLO frame.
func AppendHello(dst []byte, corr uint32, version uint16, name, token string) []byte {
	dst, start := AppendHeader(dst, TypeHello, 0, corr)
	dst = binary.BigEndian.AppendUint16(dst, version)
	dst = appendStr8(dst, name)
	dst = appendStr8(dst, token)
	return FinishFrame(dst, start)
}

// Welcome is the body of WELCOME, the server's answer to a good HELLO.
type Welcome struct {
	Version        uint16
	ConnID         uint64 // this connection's id; MESSAGE and INCOMING carry the sender's
	MaxFrame       uint32 // largest length field the server accepts
	PingIntervalMs uint32 // the client should send something (a PING if nothing else) at least this often; 0: no idle timeout
	MaxPending     uint32 // outbound messages the server queues for this connection
	ServerID       []byte // node name
}

// ParseWelcome parses a WELCOME body.
func ParseWelcome(body []byte) (Welcome, error) {
	r := reader{b: body}
	w := Welcome{Version: r.u16(), ConnID: r.u64(), MaxFrame: r.u32(), PingIntervalMs: r.u32(),
		MaxPending: r.u32(), ServerID: r.str8()}
	return w, r.end()
}

// AppendWelcome appends a WELCOME frame.
func AppendWelcome(dst []byte, corr uint32, w Welcome) []byte {
	dst, start := AppendHeader(dst, TypeWelcome, 0, corr)
	dst = binary.BigEndian.AppendUint16(dst, w.Version)
	dst = binary.BigEndian.AppendUint64(dst, w.ConnID)
	dst = binary.BigEndian.AppendUint32(dst, w.MaxFrame)
	dst = binary.BigEndian.AppendUint32(dst, w.PingIntervalMs)
	dst = binary.BigEndian.AppendUint32(dst, w.MaxPending)
	dst = appendStr8(dst, w.ServerID)
	return FinishFrame(dst, start)
}

// ParseName validates a REGISTER or UNREGISTER body, which is the name itself.
func ParseName(body []byte) ([]byte, error) {
	if len(body) == 0 || len(body) > MaxNameLen {
		return nil, ErrBadName
	}
	return body, nil
}

// AppendName appends a REGISTER or UNREGISTER frame.
func AppendName(dst []byte, t Type, corr uint32, name string) []byte {
	dst, start := AppendHeader(dst, t, 0, corr)
	dst = append(dst, name...)
	return FinishFrame(dst, start)
}

// ParseSend parses a SEND body.
func ParseSend(body []byte) (name, payload []byte, err error) {
	r := reader{b: body}
	name = r.str8()
	payload = r.rest()
	if err = r.err(); err != nil {
		return nil, nil, err
	}
	if len(name) == 0 {
		return nil, nil, ErrBadName
	}
	return name, payload, nil
}

// AppendSend appends a SEND frame; flags may include FlagAck.
func AppendSend(dst []byte, flags Flags, corr uint32, name string, payload []byte) []byte {
	dst, start := AppendHeader(dst, TypeSend, flags, corr)
	dst = appendStr8(dst, name)
	dst = append(dst, payload...)
	return FinishFrame(dst, start)
}

// ParseRequest parses a REQUEST body. timeoutMs 0 asks for the server's default.
func ParseRequest(body []byte) (name []byte, timeoutMs uint32, payload []byte, err error) {
	r := reader{b: body}
	name = r.str8()
	timeoutMs = r.u32()
	payload = r.rest()
	if err = r.err(); err != nil {
		return nil, 0, nil, err
	}
	if len(name) == 0 {
		return nil, 0, nil, ErrBadName
	}
	return name, timeoutMs, payload, nil
}

// AppendRequest appends a REQUEST frame. corr must not be 0: the outcome comes back with it.
func AppendRequest(dst []byte, corr uint32, name string, timeoutMs uint32, payload []byte) []byte {
	dst, start := AppendHeader(dst, TypeRequest, 0, corr)
	dst = appendStr8(dst, name)
	dst = binary.BigEndian.AppendUint32(dst, timeoutMs)
	dst = append(dst, payload...)
	return FinishFrame(dst, start)
}

// ParseReply parses a REPLY body.
func ParseReply(body []byte) (token uint64, payload []byte, err error) {
	r := reader{b: body}
	token = r.u64()
	payload = r.rest()
	return token, payload, r.err()
}

// AppendReply appends a REPLY frame answering the INCOMING request with this token.
func AppendReply(dst []byte, corr uint32, token uint64, payload []byte) []byte {
	dst, start := AppendHeader(dst, TypeReply, 0, corr)
	dst = binary.BigEndian.AppendUint64(dst, token)
	dst = append(dst, payload...)
	return FinishFrame(dst, start)
}

// ParseMessage parses a MESSAGE body.
func ParseMessage(body []byte) (fromConn uint64, from, payload []byte, err error) {
	r := reader{b: body}
	fromConn = r.u64()
	from = r.str8()
	payload = r.rest()
	return fromConn, from, payload, r.err()
}

// AppendMessage appends a MESSAGE frame (a SEND delivered to its target). The sender's
// name may be a string or bytes (the server keeps names as strings).
func AppendMessage[S ~string | ~[]byte](dst []byte, fromConn uint64, from S, payload []byte) []byte {
	dst, start := AppendHeader(dst, TypeMessage, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, fromConn)
	dst = appendStr8(dst, from)
	dst = append(dst, payload...)
	return FinishFrame(dst, start)
}

// MessageLen is the length field of a MESSAGE with a sender name of fromLen bytes and a
// payload of payloadLen bytes. The server refuses a SEND whose MESSAGE would exceed the
// maximum frame, so every frame it sends fits the maximum it announced in WELCOME.
func MessageLen(fromLen, payloadLen int) int { return MinLen + 8 + 1 + fromLen + payloadLen }

// IncomingLen is the length field of an INCOMING, as MessageLen.
func IncomingLen(fromLen, payloadLen int) int { return MinLen + 16 + 1 + fromLen + payloadLen }

// ParseIncoming parses an INCOMING body.
func ParseIncoming(body []byte) (token, fromConn uint64, from, payload []byte, err error) {
	r := reader{b: body}
	token = r.u64()
	fromConn = r.u64()
	from = r.str8()
	payload = r.rest()
	return token, fromConn, from, payload, r.err()
}

// AppendIncoming appends an INCOMING frame (a REQUEST delivered to its target), with
// the sender's name as AppendMessage.
func AppendIncoming[S ~string | ~[]byte](dst []byte, token, fromConn uint64, from S, payload []byte) []byte {
	dst, start := AppendHeader(dst, TypeIncoming, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, token)
	dst = binary.BigEndian.AppendUint64(dst, fromConn)
	dst = appendStr8(dst, from)
	dst = append(dst, payload...)
	return FinishFrame(dst, start)
}

// ErrorBody is the body of an ERROR frame.
type ErrorBody struct {
	Code         ErrorCode
	RetryAfterMs uint32 // 0: no advice
	Flags        ErrorFlags
	Reason       string
	Addrs        []string // other nodes to try; usually empty
}

// ParseError parses an ERROR body. It allocates (strings); it is for clients.
func ParseError(body []byte) (ErrorBody, error) {
	r := reader{b: body}
	e := ErrorBody{Code: ErrorCode(r.u16()), RetryAfterMs: r.u32(), Flags: ErrorFlags(r.u8())}
	e.Reason = string(r.str8())
	e.Addrs = parseAddrs(&r)
	return e, r.end()
}

func parseAddrs(r *reader) []string {
	n := int(r.u8())
	if n == 0 || r.bad {
		return nil
	}
	addrs := make([]string, 0, n)
	for range n {
		a := r.str8()
		if r.bad {
			return nil
		}
		addrs = append(addrs, string(a))
	}
	return addrs
}

func appendAddrs(dst []byte, addrs []string) []byte {
	if len(addrs) > 255 {
		addrs = addrs[:255]
	}
	dst = append(dst, byte(len(addrs)))
	for _, a := range addrs {
		dst = appendStr8(dst, a)
	}
	return dst
}

// AppendError appends an ERROR frame.
func AppendError(dst []byte, corr uint32, e ErrorBody) []byte {
	dst, start := AppendHeader(dst, TypeError, 0, corr)
	dst = binary.BigEndian.AppendUint16(dst, uint16(e.Code))
	dst = binary.BigEndian.AppendUint32(dst, e.RetryAfterMs)
	dst = append(dst, byte(e.Flags))
	dst = appendStr8(dst, e.Reason)
	dst = appendAddrs(dst, e.Addrs)
	return FinishFrame(dst, start)
}

// GoAway is the body of GOAWAY: the node is draining and will close this connection.
type GoAway struct {
	ReconnectAfterMs uint32 // wait at least this long before reconnecting here
	Reason           string
	Addrs            []string // other nodes to try
}

// ParseGoAway parses a GOAWAY body.
func ParseGoAway(body []byte) (GoAway, error) {
	r := reader{b: body}
	g := GoAway{ReconnectAfterMs: r.u32()}
	g.Reason = string(r.str8())
	g.Addrs = parseAddrs(&r)
	return g, r.end()
}

// AppendGoAway appends a GOAWAY frame.
func AppendGoAway(dst []byte, g GoAway) []byte {
	dst, start := AppendHeader(dst, TypeGoAway, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, g.ReconnectAfterMs)
	dst = appendStr8(dst, g.Reason)
	dst = appendAddrs(dst, g.Addrs)
	return FinishFrame(dst, start)
}

// ValidateBody checks that body has the layout of type t. Opaque bodies (PING, ECHO and
// their answers, RESPONSE) always pass; OK and GOODBYE must be empty. Unknown types fail.
func ValidateBody(t Type, body []byte) error {
	var err error
	switch t {
	case TypeHello:
		_, err = ParseHello(body)
	case TypeWelcome:
		_, err = ParseWelcome(body)
	case TypePing, TypePong, TypeEcho, TypeEchoReply, TypeResponse:
	case TypeRegister, TypeUnregister:
		_, err = ParseName(body)
	case TypeSend:
		_, _, err = ParseSend(body)
	case TypeRequest:
		_, _, _, err = ParseRequest(body)
	case TypeReply:
		_, _, err = ParseReply(body)
	case TypeMessage:
		_, _, _, err = ParseMessage(body)
	case TypeIncoming:
		_, _, _, _, err = ParseIncoming(body)
	case TypeError:
		_, err = ParseError(body)
	case TypeGoAway:
		_, err = ParseGoAway(body)
	case TypeOK, TypeGoodbye:
		if len(body) != 0 {
			err = ErrBadBody
		}
	default:
		err = ErrBadBody
	}
	return err
}
