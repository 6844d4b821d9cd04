package codec_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/codec"
)

// name255 and name256 are the longest legal name and the shortest illegal one.
var (
	name255 = strings.Repeat("n", codec.MaxNameLen)
	name256 = strings.Repeat("n", codec.MaxNameLen+1)
)

// header returns a 10-byte frame header with the given length field.
func header(length uint32, t codec.Type, flags codec.Flags, corr uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, byte(t), byte(flags))
	return binary.BigEndian.AppendUint32(b, corr)
}

// frame builds a raw frame with a correct length field around body.
func frame(t codec.Type, flags codec.Flags, corr uint32, body []byte) []byte {
	return append(header(uint32(codec.MinLen+len(body)), t, flags, corr), body...)
}

// decodeOne decodes b, which must hold exactly one frame, and checks the header fields.
func decodeOne(t *testing.T, b []byte, typ codec.Type, flags codec.Flags, corr uint32) codec.Frame {
	t.Helper()
	f, n, err := codec.Decode(b, codec.DefaultMaxFrame)
	if err != nil {
		t.Fatalf("Decode: got error %v; want nil", err)
	}
	if n != len(b) {
		t.Fatalf("Decode: got n=%d; want %d", n, len(b))
	}
	if f.Type != typ || f.Flags != flags || f.Corr != corr {
		t.Fatalf("Decode: got type=%v flags=%#x corr=%d; want type=%v flags=%#x corr=%d",
			f.Type, f.Flags, f.Corr, typ, flags, corr)
	}
	if err := codec.ValidateBody(f.Type, f.Body); err != nil {
		t.Fatalf("ValidateBody(%v): got %v; want nil", f.Type, err)
	}
	if got := f.Append(nil); !bytes.Equal(got, b) {
		t.Fatalf("Frame.Append: got %x; want %x", got, b)
	}
	return f
}

func TestRoundTripHello(t *testing.T) {
	tests := []struct {
		corr        uint32
		version     uint16
		name, token string
	}{
		{0, 1, "", ""},
		{1, 1, "alice", "s3cret"},
		{0xffffffff, 0xffff, name255, name255},
		{7, 2, "\x00\xff binary", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("corr=%d/v=%d/name=%d/token=%d", tt.corr, tt.version, len(tt.name), len(tt.token)), func(t *testing.T) {
			b := codec.AppendHello(nil, tt.corr, tt.version, tt.name, tt.token)
			f := decodeOne(t, b, codec.TypeHello, 0, tt.corr)
			h, err := codec.ParseHello(f.Body)
			if err != nil {
				t.Fatalf("ParseHello: %v", err)
			}
			if h.Version != tt.version || string(h.Name) != tt.name || string(h.Token) != tt.token {
				t.Fatalf("ParseHello: got %+v; want version=%d name=%q token=%q", h, tt.version, tt.name, tt.token)
			}
		})
	}
}

func TestRoundTripWelcome(t *testing.T) {
	tests := []struct {
		corr uint32
		w    codec.Welcome
	}{
		{0, codec.Welcome{}},
		{1, codec.Welcome{Version: 1, ConnID: 0x0001020000050003, MaxFrame: codec.DefaultMaxFrame,
			PingIntervalMs: 30000, MaxPending: 1000, ServerID: []byte("node-1")}},
		{0xffffffff, codec.Welcome{Version: 0xffff, ConnID: ^uint64(0), MaxFrame: ^uint32(0),
			PingIntervalMs: ^uint32(0), MaxPending: ^uint32(0), ServerID: []byte(name255)}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("corr=%d/conn=%#x/server=%d", tt.corr, tt.w.ConnID, len(tt.w.ServerID)), func(t *testing.T) {
			b := codec.AppendWelcome(nil, tt.corr, tt.w)
			f := decodeOne(t, b, codec.TypeWelcome, 0, tt.corr)
			got, err := codec.ParseWelcome(f.Body)
			if err != nil {
				t.Fatalf("ParseWelcome: %v", err)
			}
			want := tt.w
			if want.ServerID == nil {
				want.ServerID = []byte{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ParseWelcome: got %+v; want %+v", got, want)
			}
		})
	}
}

func TestRoundTripName(t *testing.T) {
	for _, typ := range []codec.Type{codec.TypeRegister, codec.TypeUnregister} {
		for _, name := range []string{"a", "svc.orders", "\x00\xff", name255} {
			t.Run(fmt.Sprintf("%v/len=%d", typ, len(name)), func(t *testing.T) {
				b := codec.AppendName(nil, typ, 9, name)
				f := decodeOne(t, b, typ, 0, 9)
				got, err := codec.ParseName(f.Body)
				if err != nil || string(got) != name {
					t.Fatalf("ParseName: got %q, %v; want %q, nil", got, err, name)
				}
			})
		}
	}
}

func TestRoundTripSend(t *testing.T) {
	tests := []struct {
		flags   codec.Flags
		corr    uint32
		name    string
		payload []byte
	}{
		{0, 0, "a", nil},
		{codec.FlagAck, 3, "orders", []byte("hello")},
		{codec.FlagAck, 0xffffffff, name255, bytes.Repeat([]byte{0xab}, 1000)},
		{0xfe, 1, "x", []byte{0}}, // undefined flag bits are carried, not interpreted
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("flags=%#x/corr=%d/name=%d/payload=%d", tt.flags, tt.corr, len(tt.name), len(tt.payload)), func(t *testing.T) {
			b := codec.AppendSend(nil, tt.flags, tt.corr, tt.name, tt.payload)
			f := decodeOne(t, b, codec.TypeSend, tt.flags, tt.corr)
			name, payload, err := codec.ParseSend(f.Body)
			if err != nil || string(name) != tt.name || !bytes.Equal(payload, tt.payload) {
				t.Fatalf("ParseSend: got %q, %x, %v; want %q, %x, nil", name, payload, err, tt.name, tt.payload)
			}
		})
	}
}

func TestRoundTripRequest(t *testing.T) {
	tests := []struct {
		corr      uint32
		name      string
		timeoutMs uint32
		payload   []byte
	}{
		{1, "a", 0, nil},
		{5, "calc", 2500, []byte("2+2")},
		{0xffffffff, name255, ^uint32(0), bytes.Repeat([]byte{1}, 300)},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("corr=%d/name=%d/timeout=%d/payload=%d", tt.corr, len(tt.name), tt.timeoutMs, len(tt.payload)), func(t *testing.T) {
			b := codec.AppendRequest(nil, tt.corr, tt.name, tt.timeoutMs, tt.payload)
			f := decodeOne(t, b, codec.TypeRequest, 0, tt.corr)
			name, timeout, payload, err := codec.ParseRequest(f.Body)
			if err != nil || string(name) != tt.name || timeout != tt.timeoutMs || !bytes.Equal(payload, tt.payload) {
				t.Fatalf("ParseRequest: got %q, %d, %x, %v; want %q, %d, %x, nil",
					name, timeout, payload, err, tt.name, tt.timeoutMs, tt.payload)
			}
		})
	}
}

func TestRoundTripReply(t *testing.T) {
	tests := []struct {
		corr    uint32
		token   uint64
		payload []byte
	}{
		{0, 0, nil},
		{6, 0x0001020000070001, []byte("4")},
		{0xffffffff, ^uint64(0), bytes.Repeat([]byte{2}, 500)},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("corr=%d/token=%#x/payload=%d", tt.corr, tt.token, len(tt.payload)), func(t *testing.T) {
			b := codec.AppendReply(nil, tt.corr, tt.token, tt.payload)
			f := decodeOne(t, b, codec.TypeReply, 0, tt.corr)
			token, payload, err := codec.ParseReply(f.Body)
			if err != nil || token != tt.token || !bytes.Equal(payload, tt.payload) {
				t.Fatalf("ParseReply: got %#x, %x, %v; want %#x, %x, nil", token, payload, err, tt.token, tt.payload)
			}
		})
	}
}

func TestRoundTripMessage(t *testing.T) {
	tests := []struct {
		from     uint64
		fromName string
		payload  []byte
	}{
		{0, "", nil},
		{0x0001020000050003, "alice", []byte("hello")},
		{^uint64(0), name255, bytes.Repeat([]byte{3}, 700)},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("from=%#x/name=%d/payload=%d", tt.from, len(tt.fromName), len(tt.payload)), func(t *testing.T) {
			b := codec.AppendMessage(nil, tt.from, []byte(tt.fromName), tt.payload)
			f := decodeOne(t, b, codec.TypeMessage, 0, 0)
			from, name, payload, err := codec.ParseMessage(f.Body)
			if err != nil || from != tt.from || string(name) != tt.fromName || !bytes.Equal(payload, tt.payload) {
				t.Fatalf("ParseMessage: got %#x, %q, %x, %v; want %#x, %q, %x, nil",
					from, name, payload, err, tt.from, tt.fromName, tt.payload)
			}
		})
	}
}

func TestRoundTripIncoming(t *testing.T) {
	tests := []struct {
		token, from uint64
		fromName    string
		payload     []byte
	}{
		{0, 0, "", nil},
		{0x0001020000070001, 0x0001020000050003, "alice", []byte("2+2")},
		{^uint64(0), ^uint64(0), name255, bytes.Repeat([]byte{4}, 900)},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("token=%#x/from=%#x/name=%d/payload=%d", tt.token, tt.from, len(tt.fromName), len(tt.payload)), func(t *testing.T) {
			b := codec.AppendIncoming(nil, tt.token, tt.from, []byte(tt.fromName), tt.payload)
			f := decodeOne(t, b, codec.TypeIncoming, 0, 0)
			token, from, name, payload, err := codec.ParseIncoming(f.Body)
			if err != nil || token != tt.token || from != tt.from || string(name) != tt.fromName || !bytes.Equal(payload, tt.payload) {
				t.Fatalf("ParseIncoming: got %#x, %#x, %q, %x, %v; want %#x, %#x, %q, %x, nil",
					token, from, name, payload, err, tt.token, tt.from, tt.fromName, tt.payload)
			}
		})
	}
}

func TestRoundTripError(t *testing.T) {
	tests := []struct {
		corr uint32
		e    codec.ErrorBody
	}{
		{0, codec.ErrorBody{Code: codec.CodeBadFrame, Flags: codec.ErrFlagClosing}},
		{4, codec.ErrorBody{Code: codec.CodeQueueFull, RetryAfterMs: 250, Reason: "target queue full"}},
		{0, codec.ErrorBody{Code: codec.CodeBusy, RetryAfterMs: 1000,
			Flags:  codec.ErrFlagClosing | codec.ErrFlagReconnect | codec.ErrFlagTryOther,
			Reason: "node at capacity", Addrs: []string{"10.0.0.2:7400", "10.0.0.3:7400"}}},
		{0xffffffff, codec.ErrorBody{Code: 0xffff, RetryAfterMs: ^uint32(0), Flags: 0xff,
			Reason: name255, Addrs: []string{name255, "", "x"}}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("corr=%d/%v/addrs=%d", tt.corr, tt.e.Code, len(tt.e.Addrs)), func(t *testing.T) {
			b := codec.AppendError(nil, tt.corr, tt.e)
			f := decodeOne(t, b, codec.TypeError, 0, tt.corr)
			got, err := codec.ParseError(f.Body)
			if err != nil || !reflect.DeepEqual(got, tt.e) {
				t.Fatalf("ParseError: got %+v, %v; want %+v, nil", got, err, tt.e)
			}
		})
	}
}

func TestRoundTripGoAway(t *testing.T) {
	tests := []codec.GoAway{
		{},
		{ReconnectAfterMs: 5000, Reason: "draining", Addrs: []string{"10.0.0.2:7400"}},
		{ReconnectAfterMs: ^uint32(0), Reason: name255, Addrs: []string{"a", "b", "c"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("after=%d/reason=%d/addrs=%d", tt.ReconnectAfterMs, len(tt.Reason), len(tt.Addrs)), func(t *testing.T) {
			b := codec.AppendGoAway(nil, tt)
			f := decodeOne(t, b, codec.TypeGoAway, 0, 0)
			got, err := codec.ParseGoAway(f.Body)
			if err != nil || !reflect.DeepEqual(got, tt) {
				t.Fatalf("ParseGoAway: got %+v, %v; want %+v, nil", got, err, tt)
			}
		})
	}
}

func TestRoundTripOpaque(t *testing.T) {
	types := []codec.Type{codec.TypePing, codec.TypePong, codec.TypeEcho, codec.TypeEchoReply,
		codec.TypeResponse, codec.TypeOK, codec.TypeGoodbye}
	for _, typ := range types {
		for _, body := range [][]byte{nil, []byte("payload")} {
			if len(body) > 0 && (typ == codec.TypeOK || typ == codec.TypeGoodbye) {
				continue // these must be empty
			}
			t.Run(fmt.Sprintf("%v/body=%d", typ, len(body)), func(t *testing.T) {
				b := codec.AppendFrame(nil, typ, 0, 11, body)
				f := decodeOne(t, b, typ, 0, 11)
				if !bytes.Equal(f.Body, body) {
					t.Fatalf("Body: got %x; want %x", f.Body, body)
				}
			})
		}
	}
}

func TestAppendHeaderFinishFrame(t *testing.T) {
	prefix := []byte("existing")
	dst, start := codec.AppendHeader(prefix, codec.TypeEcho, 0, 42)
	if start != len(prefix) {
		t.Fatalf("AppendHeader start: got %d; want %d", start, len(prefix))
	}
	dst = append(dst, "abc"...)
	dst = codec.FinishFrame(dst, start)
	want := append([]byte("existing"), codec.AppendFrame(nil, codec.TypeEcho, 0, 42, []byte("abc"))...)
	if !bytes.Equal(dst, want) {
		t.Fatalf("got %x; want %x", dst, want)
	}
}

func TestDecode(t *testing.T) {
	ping := codec.AppendFrame(nil, codec.TypePing, 0, 7, []byte("abcd")) // 14 bytes
	maxBody := make([]byte, 100-codec.MinLen)
	atMax := codec.AppendFrame(nil, codec.TypeEcho, 0, 1, maxBody) // length field 100
	tests := []struct {
		name    string
		in      []byte
		max     int
		wantN   int
		wantErr error
	}{
		{"empty", nil, 0, 0, codec.ErrShort},
		{"prefix 1 byte", ping[:1], 0, 0, codec.ErrShort},
		{"prefix 3 bytes", ping[:3], 0, 0, codec.ErrShort},
		{"prefix only", ping[:4], 0, 0, codec.ErrShort},
		{"header only", ping[:10], 0, 0, codec.ErrShort},
		{"one byte short", ping[:13], 0, 0, codec.ErrShort},
		{"whole frame", ping, 0, 14, nil},
		{"frame then partial prefix", append(append([]byte{}, ping...), ping[:2]...), 0, 14, nil},
		{"frame then partial frame", append(append([]byte{}, ping...), ping[:12]...), 0, 14, nil},
		{"frame then bad length", append(append([]byte{}, ping...), 0, 0, 0, 1), 0, 14, nil},
		{"length 0", []byte{0, 0, 0, 0}, 0, 0, codec.ErrFrameTooSmall},
		{"length 5", []byte{0, 0, 0, 5, 1, 0, 0, 0, 0}, 0, 0, codec.ErrFrameTooSmall},
		{"length 6 empty body", header(6, codec.TypeOK, 0, 0), 0, 10, nil},
		{"length max+1 from 4 bytes", []byte{0, 0x10, 0, 1}, 0, 0, codec.ErrFrameTooLarge},
		{"length 0xffffffff from 4 bytes", []byte{0xff, 0xff, 0xff, 0xff}, 0, 0, codec.ErrFrameTooLarge},
		{"length max needs more", []byte{0, 0x10, 0, 0}, 0, 0, codec.ErrShort},
		{"custom max exceeded", atMax[:4], 99, 0, codec.ErrFrameTooLarge},
		{"custom max exact", atMax, 100, 104, nil},
		{"custom max exact then more", append(append([]byte{}, atMax...), ping...), 100, 104, nil},
		{"negative max means default", ping, -1, 14, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := codec.Decode(tt.in, tt.max)
			if !errors.Is(err, tt.wantErr) || n != tt.wantN {
				t.Fatalf("Decode: got n=%d err=%v; want n=%d err=%v", n, err, tt.wantN, tt.wantErr)
			}
			// FrameLen agrees with Decode but does not need the body.
			fl, ferr := codec.FrameLen(tt.in, tt.max)
			switch {
			case len(tt.in) < codec.PrefixLen:
				if ferr != codec.ErrShort {
					t.Fatalf("FrameLen: got %v; want %v", ferr, codec.ErrShort)
				}
			case tt.wantErr == nil:
				if ferr != nil || fl != n {
					t.Fatalf("FrameLen: got %d, %v; want %d, nil", fl, ferr, n)
				}
			case tt.wantErr != codec.ErrShort:
				if ferr != tt.wantErr {
					t.Fatalf("FrameLen: got %v; want %v", ferr, tt.wantErr)
				}
			}
			if err != nil {
				if !reflect.DeepEqual(f, codec.Frame{}) {
					t.Fatalf("Decode: got frame %+v with error; want zero Frame", f)
				}
				return
			}
			if got := f.Append(nil); !bytes.Equal(got, tt.in[:n]) {
				t.Fatalf("Append: got %x; want %x", got, tt.in[:n])
			}
		})
	}
}

func TestDecodeExactlyDefaultMax(t *testing.T) {
	b := codec.AppendFrame(nil, codec.TypeEcho, 0, 1, make([]byte, codec.DefaultMaxFrame-codec.MinLen))
	f, n, err := codec.Decode(b, 0)
	if err != nil || n != codec.PrefixLen+codec.DefaultMaxFrame || len(f.Body) != codec.DefaultMaxFrame-codec.MinLen {
		t.Fatalf("Decode: got n=%d body=%d err=%v; want n=%d body=%d nil",
			n, len(f.Body), err, codec.PrefixLen+codec.DefaultMaxFrame, codec.DefaultMaxFrame-codec.MinLen)
	}
	b = codec.AppendFrame(nil, codec.TypeEcho, 0, 1, make([]byte, codec.DefaultMaxFrame-codec.MinLen+1))
	if _, _, err := codec.Decode(b[:codec.PrefixLen], 0); err != codec.ErrFrameTooLarge {
		t.Fatalf("Decode(max+1 prefix): got %v; want %v", err, codec.ErrFrameTooLarge)
	}
}

// TestDecodeBodyCapacity checks that a decoded body cannot be appended to in place, which
// would overwrite the next frame in the buffer.
func TestDecodeBodyCapacity(t *testing.T) {
	b := codec.AppendFrame(nil, codec.TypeEcho, 0, 1, []byte("ab"))
	b = codec.AppendFrame(b, codec.TypeEcho, 0, 2, []byte("cd"))
	f, _, err := codec.Decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cap(f.Body) != len(f.Body) {
		t.Fatalf("cap(Body): got %d; want %d", cap(f.Body), len(f.Body))
	}
}

// TestParseMalformed covers truncated bodies, trailing bytes and bad names.
func TestParseMalformed(t *testing.T) {
	hello := codec.AppendHello(nil, 0, 1, "alice", "tok")[codec.HeaderLen:]
	welcome := codec.AppendWelcome(nil, 0, codec.Welcome{Version: 1, ServerID: []byte("n1")})[codec.HeaderLen:]
	errBody := codec.AppendError(nil, 0, codec.ErrorBody{Code: codec.CodeBusy, Reason: "r", Addrs: []string{"a:1"}})[codec.HeaderLen:]
	goAway := codec.AppendGoAway(nil, codec.GoAway{ReconnectAfterMs: 1, Reason: "r", Addrs: []string{"a:1"}})[codec.HeaderLen:]
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name string
		typ  codec.Type
		body []byte
		want error
	}{
		// HELLO: exact consumption.
		{"hello empty", codec.TypeHello, nil, codec.ErrBadBody},
		{"hello version only", codec.TypeHello, []byte{0, 1}, codec.ErrBadBody},
		{"hello no token", codec.TypeHello, []byte{0, 1, 0}, codec.ErrBadBody},
		{"hello minimal", codec.TypeHello, []byte{0, 1, 0, 0}, nil},
		{"hello name truncated", codec.TypeHello, []byte{0, 1, 5, 'a'}, codec.ErrBadBody},
		{"hello token truncated", codec.TypeHello, hello[:len(hello)-1], codec.ErrBadBody},
		{"hello trailing byte", codec.TypeHello, cat(hello, []byte{0}), codec.ErrBadBody},
		// WELCOME: exact consumption.
		{"welcome empty", codec.TypeWelcome, nil, codec.ErrBadBody},
		{"welcome truncated", codec.TypeWelcome, welcome[:len(welcome)-1], codec.ErrBadBody},
		{"welcome no server id", codec.TypeWelcome, welcome[:22], codec.ErrBadBody},
		{"welcome trailing byte", codec.TypeWelcome, cat(welcome, []byte{0}), codec.ErrBadBody},
		{"welcome ok", codec.TypeWelcome, welcome, nil},
		// REGISTER/UNREGISTER: the body is the name, 1..255 bytes.
		{"register empty", codec.TypeRegister, nil, codec.ErrBadName},
		{"register 255", codec.TypeRegister, []byte(name255), nil},
		{"register 256", codec.TypeRegister, []byte(name256), codec.ErrBadName},
		{"unregister empty", codec.TypeUnregister, []byte{}, codec.ErrBadName},
		{"unregister 256", codec.TypeUnregister, []byte(name256), codec.ErrBadName},
		// SEND: str8 name (non-empty) then any payload.
		{"send empty", codec.TypeSend, nil, codec.ErrBadBody},
		{"send empty name", codec.TypeSend, []byte{0, 'x'}, codec.ErrBadName},
		{"send name truncated", codec.TypeSend, []byte{3, 'a', 'b'}, codec.ErrBadBody},
		{"send no payload", codec.TypeSend, []byte{1, 'a'}, nil},
		{"send 255 name", codec.TypeSend, cat([]byte{255}, []byte(name255)), nil},
		// REQUEST: str8 name (non-empty), u32 timeout, payload.
		{"request empty", codec.TypeRequest, nil, codec.ErrBadBody},
		{"request no timeout", codec.TypeRequest, []byte{1, 'a'}, codec.ErrBadBody},
		{"request short timeout", codec.TypeRequest, []byte{1, 'a', 0, 0, 0}, codec.ErrBadBody},
		{"request empty name", codec.TypeRequest, []byte{0, 0, 0, 0, 0}, codec.ErrBadName},
		{"request no payload", codec.TypeRequest, []byte{1, 'a', 0, 0, 0, 0}, nil},
		// REPLY: u64 token then payload.
		{"reply empty", codec.TypeReply, nil, codec.ErrBadBody},
		{"reply short token", codec.TypeReply, make([]byte, 7), codec.ErrBadBody},
		{"reply token only", codec.TypeReply, make([]byte, 8), nil},
		// MESSAGE: u64 from, str8 name (may be empty), payload.
		{"message empty", codec.TypeMessage, nil, codec.ErrBadBody},
		{"message no name", codec.TypeMessage, make([]byte, 8), codec.ErrBadBody},
		{"message name truncated", codec.TypeMessage, cat(make([]byte, 8), []byte{2, 'a'}), codec.ErrBadBody},
		{"message empty name", codec.TypeMessage, make([]byte, 9), nil},
		// INCOMING: u64 token, u64 from, str8 name, payload.
		{"incoming short", codec.TypeIncoming, make([]byte, 16), codec.ErrBadBody},
		{"incoming empty name", codec.TypeIncoming, make([]byte, 17), nil},
		{"incoming name truncated", codec.TypeIncoming, cat(make([]byte, 16), []byte{1}), codec.ErrBadBody},
		// ERROR: exact consumption.
		{"error empty", codec.TypeError, nil, codec.ErrBadBody},
		{"error no addr count", codec.TypeError, []byte{0, 9, 0, 0, 0, 0, 0, 0}, codec.ErrBadBody},
		{"error minimal", codec.TypeError, []byte{0, 9, 0, 0, 0, 0, 0, 0, 0}, nil},
		{"error addr truncated", codec.TypeError, errBody[:len(errBody)-1], codec.ErrBadBody},
		{"error missing addr", codec.TypeError, []byte{0, 9, 0, 0, 0, 0, 0, 0, 2, 1, 'a'}, codec.ErrBadBody},
		{"error trailing byte", codec.TypeError, cat(errBody, []byte{0}), codec.ErrBadBody},
		{"error ok", codec.TypeError, errBody, nil},
		// GOAWAY: exact consumption.
		{"goaway empty", codec.TypeGoAway, nil, codec.ErrBadBody},
		{"goaway minimal", codec.TypeGoAway, []byte{0, 0, 0, 0, 0, 0}, nil},
		{"goaway truncated", codec.TypeGoAway, goAway[:len(goAway)-1], codec.ErrBadBody},
		{"goaway trailing byte", codec.TypeGoAway, cat(goAway, []byte{0}), codec.ErrBadBody},
		{"goaway ok", codec.TypeGoAway, goAway, nil},
		// Opaque and empty bodies.
		{"ping any", codec.TypePing, []byte{1, 2, 3}, nil},
		{"pong any", codec.TypePong, []byte{1}, nil},
		{"echo empty", codec.TypeEcho, nil, nil},
		{"echo reply any", codec.TypeEchoReply, []byte{0xff}, nil},
		{"response any", codec.TypeResponse, []byte("r"), nil},
		{"ok empty", codec.TypeOK, nil, nil},
		{"ok with body", codec.TypeOK, []byte{0}, codec.ErrBadBody},
		{"goodbye empty", codec.TypeGoodbye, nil, nil},
		{"goodbye with body", codec.TypeGoodbye, []byte{0}, codec.ErrBadBody},
		// Unknown types never validate.
		{"type 0x00", 0x00, nil, codec.ErrBadBody},
		{"type 0x0a", 0x0a, nil, codec.ErrBadBody},
		{"type 0x7f", 0x7f, []byte{1}, codec.ErrBadBody},
		{"type 0x80", 0x80, nil, codec.ErrBadBody},
		{"type 0x8a", 0x8a, nil, codec.ErrBadBody},
		{"type 0xff", 0xff, nil, codec.ErrBadBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := codec.ValidateBody(tt.typ, tt.body); err != tt.want {
				t.Fatalf("ValidateBody(%v, %x): got %v; want %v", tt.typ, tt.body, err, tt.want)
			}
			if err := parseTyped(tt.typ, tt.body); err != tt.want {
				t.Fatalf("Parse(%v, %x): got %v; want %v", tt.typ, tt.body, err, tt.want)
			}
		})
	}
}

// parseTyped calls the Parse* function of t directly.
func parseTyped(t codec.Type, body []byte) error {
	var err error
	switch t {
	case codec.TypeHello:
		_, err = codec.ParseHello(body)
	case codec.TypeWelcome:
		_, err = codec.ParseWelcome(body)
	case codec.TypeRegister, codec.TypeUnregister:
		_, err = codec.ParseName(body)
	case codec.TypeSend:
		_, _, err = codec.ParseSend(body)
	case codec.TypeRequest:
		_, _, _, err = codec.ParseRequest(body)
	case codec.TypeReply:
		_, _, err = codec.ParseReply(body)
	case codec.TypeMessage:
		_, _, _, err = codec.ParseMessage(body)
	case codec.TypeIncoming:
		_, _, _, _, err = codec.ParseIncoming(body)
	case codec.TypeError:
		_, err = codec.ParseError(body)
	case codec.TypeGoAway:
		_, err = codec.ParseGoAway(body)
	default:
		return codec.ValidateBody(t, body)
	}
	return err
}

// TestLongStrings pins what the encoders do with strings longer than a str8 can hold.
// Names must be validated before encoding; the encoders do not report errors.
func TestLongStrings(t *testing.T) {
	t.Run("AppendName 256 is rejected by the parser", func(t *testing.T) {
		b := codec.AppendName(nil, codec.TypeRegister, 1, name256)
		f := decodeOne256(t, b)
		if _, err := codec.ParseName(f.Body); err != codec.ErrBadName {
			t.Fatalf("ParseName: got %v; want %v", err, codec.ErrBadName)
		}
	})
	t.Run("AppendName empty is rejected by the parser", func(t *testing.T) {
		b := codec.AppendName(nil, codec.TypeRegister, 1, "")
		f := decodeOne256(t, b)
		if _, err := codec.ParseName(f.Body); err != codec.ErrBadName {
			t.Fatalf("ParseName: got %v; want %v", err, codec.ErrBadName)
		}
	})
	t.Run("AppendSend empty name is rejected by the parser", func(t *testing.T) {
		f := decodeOne256(t, codec.AppendSend(nil, 0, 1, "", []byte("p")))
		if _, _, err := codec.ParseSend(f.Body); err != codec.ErrBadName {
			t.Fatalf("ParseSend: got %v; want %v", err, codec.ErrBadName)
		}
	})
	t.Run("AppendRequest empty name is rejected by the parser", func(t *testing.T) {
		f := decodeOne256(t, codec.AppendRequest(nil, 1, "", 0, nil))
		if _, _, _, err := codec.ParseRequest(f.Body); err != codec.ErrBadName {
			t.Fatalf("ParseRequest: got %v; want %v", err, codec.ErrBadName)
		}
	})
	t.Run("AppendSend truncates a 256-byte name to 255", func(t *testing.T) {
		f := decodeOne256(t, codec.AppendSend(nil, 0, 1, name256+"X", []byte("p")))
		name, payload, err := codec.ParseSend(f.Body)
		if err != nil || string(name) != name255 || string(payload) != "p" {
			t.Fatalf("ParseSend: got name=%d payload=%q err=%v; want name=255 payload=\"p\" nil", len(name), payload, err)
		}
	})
	t.Run("AppendRequest truncates a 256-byte name to 255", func(t *testing.T) {
		f := decodeOne256(t, codec.AppendRequest(nil, 1, name256, 7, []byte("p")))
		name, timeout, payload, err := codec.ParseRequest(f.Body)
		if err != nil || string(name) != name255 || timeout != 7 || string(payload) != "p" {
			t.Fatalf("ParseRequest: got name=%d timeout=%d payload=%q err=%v; want 255 7 \"p\" nil", len(name), timeout, payload, err)
		}
	})
	t.Run("AppendHello truncates name and token to 255", func(t *testing.T) {
		f := decodeOne256(t, codec.AppendHello(nil, 1, 1, name256, name256))
		h, err := codec.ParseHello(f.Body)
		if err != nil || string(h.Name) != name255 || string(h.Token) != name255 {
			t.Fatalf("ParseHello: got name=%d token=%d err=%v; want 255 255 nil", len(h.Name), len(h.Token), err)
		}
	})
	t.Run("AppendMessage truncates the sender name to 255", func(t *testing.T) {
		f := decodeOne256(t, codec.AppendMessage(nil, 1, []byte(name256), []byte("p")))
		_, from, payload, err := codec.ParseMessage(f.Body)
		if err != nil || string(from) != name255 || string(payload) != "p" {
			t.Fatalf("ParseMessage: got from=%d payload=%q err=%v; want 255 \"p\" nil", len(from), payload, err)
		}
	})
	t.Run("AppendError truncates reason, addresses and address count", func(t *testing.T) {
		addrs := make([]string, 300)
		for i := range addrs {
			addrs[i] = name256
		}
		f := decodeOne256(t, codec.AppendError(nil, 1, codec.ErrorBody{Code: codec.CodeBusy, Reason: name256, Addrs: addrs}))
		e, err := codec.ParseError(f.Body)
		if err != nil || e.Reason != name255 || len(e.Addrs) != 255 || e.Addrs[254] != name255 {
			t.Fatalf("ParseError: got reason=%d addrs=%d err=%v; want 255 255 nil", len(e.Reason), len(e.Addrs), err)
		}
	})
	t.Run("AppendGoAway truncates the reason", func(t *testing.T) {
		f := decodeOne256(t, codec.AppendGoAway(nil, codec.GoAway{Reason: name256}))
		g, err := codec.ParseGoAway(f.Body)
		if err != nil || g.Reason != name255 {
			t.Fatalf("ParseGoAway: got reason=%d err=%v; want 255 nil", len(g.Reason), err)
		}
	})
}

func decodeOne256(t *testing.T, b []byte) codec.Frame {
	t.Helper()
	f, n, err := codec.Decode(b, 0)
	if err != nil || n != len(b) {
		t.Fatalf("Decode: got n=%d err=%v; want n=%d nil", n, err, len(b))
	}
	return f
}

var allTypes = []struct {
	t    codec.Type
	name string
}{
	{codec.TypeHello, "HELLO"}, {codec.TypePing, "PING"}, {codec.TypeEcho, "ECHO"},
	{codec.TypeRegister, "REGISTER"}, {codec.TypeUnregister, "UNREGISTER"}, {codec.TypeSend, "SEND"},
	{codec.TypeRequest, "REQUEST"}, {codec.TypeReply, "REPLY"}, {codec.TypeGoodbye, "GOODBYE"},
	{codec.TypeWelcome, "WELCOME"}, {codec.TypePong, "PONG"}, {codec.TypeEchoReply, "ECHO_REPLY"},
	{codec.TypeOK, "OK"}, {codec.TypeError, "ERROR"}, {codec.TypeMessage, "MESSAGE"},
	{codec.TypeIncoming, "INCOMING"}, {codec.TypeResponse, "RESPONSE"}, {codec.TypeGoAway, "GOAWAY"},
}

func TestTypeString(t *testing.T) {
	known := map[codec.Type]bool{}
	for i, tt := range allTypes {
		known[tt.t] = true
		fromServer := i >= 9 // allTypes lists the 9 client-to-server types first
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.t.String(); got != tt.name {
				t.Fatalf("String: got %q; want %q", got, tt.name)
			}
			if !tt.t.Known() {
				t.Fatalf("Known: got false; want true")
			}
			if got := tt.t&0x80 != 0; got != fromServer {
				t.Fatalf("high bit (server-to-client): got %v; want %v", got, fromServer)
			}
		})
	}
	for _, tt := range []struct {
		t    codec.Type
		want string
	}{{0x00, "TYPE_0x00"}, {0x0a, "TYPE_0x0a"}, {0x7f, "TYPE_0x7f"}, {0x80, "TYPE_0x80"}, {0x8a, "TYPE_0x8a"}, {0xff, "TYPE_0xff"}} {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.t.String(); got != tt.want {
				t.Fatalf("String: got %q; want %q", got, tt.want)
			}
			if tt.t.Known() {
				t.Fatalf("Known: got true; want false")
			}
		})
	}
	n := 0
	for i := range 256 {
		if codec.Type(i).Known() {
			n++
			if !known[codec.Type(i)] {
				t.Errorf("Type %#x is Known but not in this test's table", i)
			}
		}
	}
	if n != len(allTypes) {
		t.Errorf("Known types: got %d; want %d", n, len(allTypes))
	}
}

var allCodes = []struct {
	c    codec.ErrorCode
	n    uint16
	name string
}{
	{codec.CodeBadFrame, 1, "BAD_FRAME"}, {codec.CodeFrameTooLarge, 2, "FRAME_TOO_LARGE"},
	{codec.CodeUnsupportedVersion, 3, "UNSUPPORTED_VERSION"}, {codec.CodeUnauthorized, 4, "UNAUTHORIZED"},
	{codec.CodeHandshakeTimeout, 5, "HANDSHAKE_TIMEOUT"}, {codec.CodeUnknownType, 6, "UNKNOWN_TYPE"},
	{codec.CodeBusy, 7, "BUSY"}, {codec.CodeRateLimited, 8, "RATE_LIMITED"}, {codec.CodeQueueFull, 9, "QUEUE_FULL"},
	{codec.CodeSlowConsumer, 10, "SLOW_CONSUMER"}, {codec.CodeCircuitOpen, 11, "CIRCUIT_OPEN"},
	{codec.CodeNoRoute, 12, "NO_ROUTE"}, {codec.CodeNameTaken, 13, "NAME_TAKEN"}, {codec.CodeTimeout, 14, "TIMEOUT"},
	{codec.CodeShuttingDown, 15, "SHUTTING_DOWN"}, {codec.CodeInternal, 16, "INTERNAL"},
	{codec.CodeHelloRequired, 17, "HELLO_REQUIRED"}, {codec.CodeNotOwner, 18, "NOT_OWNER"},
	{codec.CodeForbidden, 19, "FORBIDDEN"}, {codec.CodeUnavailable, 20, "UNAVAILABLE"},
}

func TestErrorCodeString(t *testing.T) {
	for _, tt := range allCodes {
		t.Run(tt.name, func(t *testing.T) {
			if uint16(tt.c) != tt.n {
				t.Fatalf("value: got %d; want %d (wire numbers must never change)", tt.c, tt.n)
			}
			if got := tt.c.String(); got != tt.name {
				t.Fatalf("String: got %q; want %q", got, tt.name)
			}
			if got, ok := codec.ParseErrorCode(tt.name); !ok || got != tt.c {
				t.Fatalf("ParseErrorCode(%q): got %d, %v; want %d, true", tt.name, got, ok, tt.c)
			}
		})
	}
	if codec.MaxCode != allCodes[len(allCodes)-1].c {
		t.Errorf("MaxCode: got %d; want %d", codec.MaxCode, allCodes[len(allCodes)-1].c)
	}
	for _, tt := range []struct {
		c    codec.ErrorCode
		want string
	}{{0, "CODE_0"}, {codec.MaxCode + 1, "CODE_21"}, {1000, "CODE_1000"}, {0xffff, "CODE_65535"}} {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.c.String(); got != tt.want {
				t.Fatalf("String: got %q; want %q", got, tt.want)
			}
		})
	}
	for _, s := range []string{"", "CODE_0", "CODE_20", "bad_frame", "BAD_FRAME ", "UNKNOWN"} {
		t.Run(fmt.Sprintf("parse %q", s), func(t *testing.T) {
			if got, ok := codec.ParseErrorCode(s); ok {
				t.Fatalf("ParseErrorCode(%q): got %d, true; want 0, false", s, got)
			}
		})
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codec.ErrorCode
	}{
		{"ErrFrameTooLarge", codec.ErrFrameTooLarge, codec.CodeFrameTooLarge},
		{"ErrFrameTooSmall", codec.ErrFrameTooSmall, codec.CodeBadFrame},
		{"ErrBadBody", codec.ErrBadBody, codec.CodeBadFrame},
		{"ErrBadName", codec.ErrBadName, codec.CodeBadFrame},
		{"wrapped ErrFrameTooLarge", fmt.Errorf("conn 7: %w", codec.ErrFrameTooLarge), codec.CodeFrameTooLarge},
		{"wrapped ErrBadBody", fmt.Errorf("conn 7: %w", codec.ErrBadBody), codec.CodeBadFrame},
		{"ErrShort is not a protocol error", codec.ErrShort, codec.CodeInternal},
		{"foreign error", errors.New("boom"), codec.CodeInternal},
		{"nil", nil, codec.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := codec.CodeOf(tt.err); got != tt.want {
				t.Fatalf("CodeOf(%v): got %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestDeliveredLen(t *testing.T) {
	for _, tt := range []struct{ from, payload int }{{0, 0}, {5, 100}, {255, 1000}} {
		from := make([]byte, tt.from)
		payload := make([]byte, tt.payload)
		m := codec.AppendMessage(nil, 1, from, payload)
		if got, want := codec.MessageLen(tt.from, tt.payload), len(m)-codec.PrefixLen; got != want {
			t.Errorf("codec.MessageLen(%d, %d) = %d; want %d", tt.from, tt.payload, got, want)
		}
		in := codec.AppendIncoming(nil, 1, 2, from, payload)
		if got, want := codec.IncomingLen(tt.from, tt.payload), len(in)-codec.PrefixLen; got != want {
			t.Errorf("codec.IncomingLen(%d, %d) = %d; want %d", tt.from, tt.payload, got, want)
		}
	}
}
