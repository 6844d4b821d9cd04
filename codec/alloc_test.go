package codec_test

import (
	"testing"

	"github.com/switchboard/switchboard/codec"
)

// Inputs for TestNoAllocs are package-level so that the closures below do not make the
// compiler move anything to the heap.
var (
	allocBuf      = make([]byte, 0, 4096)
	allocPayload  = []byte("payload bytes of a typical small message")
	allocFrom     = []byte("alice")
	allocWelcome  = codec.Welcome{Version: 1, ConnID: aliceConn, MaxFrame: codec.DefaultMaxFrame, PingIntervalMs: 30000, MaxPending: 1000, ServerID: []byte("node-1")}
	allocError    = codec.ErrorBody{Code: codec.CodeBusy, RetryAfterMs: 1000, Flags: codec.ErrFlagClosing, Reason: "node full", Addrs: []string{"10.0.0.2:7400", "10.0.0.3:7400"}}
	allocGoAway   = codec.GoAway{ReconnectAfterMs: 2000, Reason: "draining", Addrs: []string{"10.0.0.2:7400"}}
	allocStream   []byte
	allocBodies   = map[codec.Type][]byte{}
	allocSinkErr  error
	allocSinkInt  int
	allocSinkU64  uint64
	allocSinkByte []byte
	// allocReader cycles through allocStream (set up in init); allocBigReader through
	// frames larger than its initial buffer, which grows during AllocsPerRun's warm-up run.
	allocReader    *codec.Reader
	allocBigReader = codec.NewReader(&loopReader{b: codec.AppendFrame(nil, codec.TypeResponse, 0, 1, make([]byte, 3000))}, 0, 1024)
	allocFrame     codec.Frame
)

func init() {
	frames := [][]byte{
		codec.AppendHello(nil, 1, 1, "alice", "s3cret"),
		codec.AppendWelcome(nil, 1, allocWelcome),
		codec.AppendName(nil, codec.TypeRegister, 1, "calc"),
		codec.AppendSend(nil, codec.FlagAck, 1, "bob", allocPayload),
		codec.AppendRequest(nil, 1, "calc", 100, allocPayload),
		codec.AppendReply(nil, 1, replyToken, allocPayload),
		codec.AppendMessage(nil, bobConn, allocFrom, allocPayload),
		codec.AppendIncoming(nil, replyToken, aliceConn, allocFrom, allocPayload),
	}
	for _, b := range frames {
		allocBodies[codec.Type(b[4])] = b[codec.HeaderLen:]
		allocStream = append(allocStream, b...)
	}
	allocReader = codec.NewReader(&loopReader{b: allocStream}, 0, 1024)
}

func TestNoAllocs(t *testing.T) {
	tests := []struct {
		name string
		fn   func()
	}{
		{"Decode", func() {
			b := allocStream
			for len(b) > 0 {
				_, n, err := codec.Decode(b, 0)
				if err != nil {
					panic(err)
				}
				b = b[n:]
			}
		}},
		{"Reader.Next", func() {
			for range 100 {
				allocFrame, allocSinkErr = allocReader.Next()
			}
		}},
		{"Reader.Next grown", func() { allocFrame, allocSinkErr = allocBigReader.Next() }},
		{"Reader.Complete", func() { allocSinkInt = allocReader.Buffered(); _ = allocReader.Complete() }},
		{"Decode error", func() { _, _, allocSinkErr = codec.Decode([]byte{0xff, 0xff, 0xff, 0xff}, 0) }},
		{"FrameLen", func() { allocSinkInt, allocSinkErr = codec.FrameLen(allocStream, 0) }},
		{"ValidateBody SEND", func() { allocSinkErr = codec.ValidateBody(codec.TypeSend, allocBodies[codec.TypeSend]) }},
		{"ParseHello", func() { _, allocSinkErr = codec.ParseHello(allocBodies[codec.TypeHello]) }},
		{"ParseWelcome", func() { _, allocSinkErr = codec.ParseWelcome(allocBodies[codec.TypeWelcome]) }},
		{"ParseName", func() { allocSinkByte, allocSinkErr = codec.ParseName(allocBodies[codec.TypeRegister]) }},
		{"ParseSend", func() { _, allocSinkByte, allocSinkErr = codec.ParseSend(allocBodies[codec.TypeSend]) }},
		{"ParseRequest", func() { _, _, allocSinkByte, allocSinkErr = codec.ParseRequest(allocBodies[codec.TypeRequest]) }},
		{"ParseReply", func() { allocSinkU64, allocSinkByte, allocSinkErr = codec.ParseReply(allocBodies[codec.TypeReply]) }},
		{"ParseMessage", func() { _, _, allocSinkByte, allocSinkErr = codec.ParseMessage(allocBodies[codec.TypeMessage]) }},
		{"ParseIncoming", func() {
			_, _, _, allocSinkByte, allocSinkErr = codec.ParseIncoming(allocBodies[codec.TypeIncoming])
		}},
		{"ParseSend bad", func() { _, _, allocSinkErr = codec.ParseSend([]byte{5}) }},
		{"AppendHeader+FinishFrame", func() {
			b, start := codec.AppendHeader(allocBuf[:0], codec.TypePong, 0, 1)
			allocSinkByte = codec.FinishFrame(append(b, allocPayload...), start)
		}},
		{"AppendFrame", func() { allocSinkByte = codec.AppendFrame(allocBuf[:0], codec.TypeEcho, 0, 1, allocPayload) }},
		{"Frame.Append", func() {
			allocSinkByte = codec.Frame{Type: codec.TypeResponse, Corr: 1, Body: allocPayload}.Append(allocBuf[:0])
		}},
		{"AppendHello", func() { allocSinkByte = codec.AppendHello(allocBuf[:0], 1, 1, "alice", "s3cret") }},
		{"AppendWelcome", func() { allocSinkByte = codec.AppendWelcome(allocBuf[:0], 1, allocWelcome) }},
		{"AppendName", func() { allocSinkByte = codec.AppendName(allocBuf[:0], codec.TypeRegister, 1, "calc") }},
		{"AppendSend", func() { allocSinkByte = codec.AppendSend(allocBuf[:0], codec.FlagAck, 1, "bob", allocPayload) }},
		{"AppendRequest", func() { allocSinkByte = codec.AppendRequest(allocBuf[:0], 1, "calc", 100, allocPayload) }},
		{"AppendReply", func() { allocSinkByte = codec.AppendReply(allocBuf[:0], 1, replyToken, allocPayload) }},
		{"AppendMessage", func() { allocSinkByte = codec.AppendMessage(allocBuf[:0], bobConn, allocFrom, allocPayload) }},
		{"AppendIncoming", func() {
			allocSinkByte = codec.AppendIncoming(allocBuf[:0], replyToken, aliceConn, allocFrom, allocPayload)
		}},
		{"AppendError", func() { allocSinkByte = codec.AppendError(allocBuf[:0], 1, allocError) }},
		{"AppendGoAway", func() { allocSinkByte = codec.AppendGoAway(allocBuf[:0], allocGoAway) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
				t.Fatalf("got %v allocs per run; want 0", n)
			}
		})
	}
}
