package codec_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/codec"
)

// -update rewrites testdata/golden/*.hex from the encoders and the ```hex blocks of
// ../docs/PROTOCOL.md from the golden files. Review the diff before committing it: a
// changed golden vector is a wire-format change.
var update = flag.Bool("update", false, "rewrite golden files and the vectors in docs/PROTOCOL.md")

const (
	goldenDir = "testdata/golden"
	protoDoc  = "../docs/PROTOCOL.md"
)

// goldenField describes one line of a golden file: the hex groups on it (their sizes in
// bytes; -1 is "the rest of the frame") and a comment naming the field.
type goldenField struct {
	desc  string
	sizes []int
}

// goldenCase is one example frame.
type goldenCase struct {
	name   string // file name without .hex; also the <!-- golden: NAME --> marker
	title  string
	fields []goldenField // body fields after the 10-byte header
	build  func() []byte
	check  func(t *testing.T, f codec.Frame) // checks the parsed body
}

// Values shared by several vectors. The connection ids follow the server's layout
// node(16) | loop(8) | slot(24) | generation(16) but are opaque to clients.
const (
	aliceConn  = 0x0001020000050003 // node 1, loop 2, slot 5, generation 3
	bobConn    = 0x0001000000070001 // node 1, loop 0, slot 7, generation 1
	replyToken = 0x0001020000090001 // opaque to clients
)

func str8(desc string) goldenField { return goldenField{desc, []int{1, -2}} }
func u8(desc string) goldenField   { return goldenField{desc, []int{1}} }
func u16(desc string) goldenField  { return goldenField{desc, []int{2}} }
func u32(desc string) goldenField  { return goldenField{desc, []int{4}} }
func u64(desc string) goldenField  { return goldenField{desc, []int{8}} }
func rest(desc string) goldenField { return goldenField{desc, []int{-1}} }

func goldenCases() []goldenCase {
	return []goldenCase{
		{
			name:  "hello",
			title: `HELLO corr=1: version 1, client name "alice", token "s3cret"`,
			fields: []goldenField{u16("version u16 = 1"), str8(`name str8 = 5 "alice"`),
				str8(`token str8 = 6 "s3cret"`)},
			build: func() []byte { return codec.AppendHello(nil, 1, 1, "alice", "s3cret") },
			check: func(t *testing.T, f codec.Frame) {
				h, err := codec.ParseHello(f.Body)
				want := codec.Hello{Version: 1, Name: []byte("alice"), Token: []byte("s3cret")}
				checkParsed(t, h, err, want)
			},
		},
		{
			name:  "welcome",
			title: `WELCOME corr=1: version 1, conn id n1/l2/s5/g3, max frame 1 MiB, ping 30 s, max pending 1000, server "node-1"`,
			fields: []goldenField{u16("version u16 = 1"), u64("conn id u64 = 0x0001020000050003"),
				u32("max frame u32 = 1048576"), u32("ping interval ms u32 = 30000"),
				u32("max pending u32 = 1000"), str8(`server id str8 = 6 "node-1"`)},
			build: func() []byte {
				return codec.AppendWelcome(nil, 1, codec.Welcome{Version: 1, ConnID: aliceConn,
					MaxFrame: codec.DefaultMaxFrame, PingIntervalMs: 30000, MaxPending: 1000, ServerID: []byte("node-1")})
			},
			check: func(t *testing.T, f codec.Frame) {
				w, err := codec.ParseWelcome(f.Body)
				checkParsed(t, w, err, codec.Welcome{Version: 1, ConnID: aliceConn,
					MaxFrame: codec.DefaultMaxFrame, PingIntervalMs: 30000, MaxPending: 1000, ServerID: []byte("node-1")})
			},
		},
		{
			name:   "ping",
			title:  `PING corr=2: payload "t1"`,
			fields: []goldenField{rest(`payload = "t1" (opaque, returned in PONG)`)},
			build:  func() []byte { return codec.AppendFrame(nil, codec.TypePing, 0, 2, []byte("t1")) },
			check:  checkOpaque("t1"),
		},
		{
			name:   "pong",
			title:  `PONG corr=2: the PING's payload "t1"`,
			fields: []goldenField{rest(`payload = "t1"`)},
			build:  func() []byte { return codec.AppendFrame(nil, codec.TypePong, 0, 2, []byte("t1")) },
			check:  checkOpaque("t1"),
		},
		{
			name:   "echo",
			title:  `ECHO corr=3: payload "hi!"`,
			fields: []goldenField{rest(`payload = "hi!" (opaque, returned in ECHO_REPLY)`)},
			build:  func() []byte { return codec.AppendFrame(nil, codec.TypeEcho, 0, 3, []byte("hi!")) },
			check:  checkOpaque("hi!"),
		},
		{
			name:   "echo_reply",
			title:  `ECHO_REPLY corr=3: the ECHO's payload "hi!"`,
			fields: []goldenField{rest(`payload = "hi!"`)},
			build:  func() []byte { return codec.AppendFrame(nil, codec.TypeEchoReply, 0, 3, []byte("hi!")) },
			check:  checkOpaque("hi!"),
		},
		{
			name:   "register",
			title:  `REGISTER corr=4: name "calc" (the whole body, no length byte)`,
			fields: []goldenField{rest(`name = "calc"`)},
			build:  func() []byte { return codec.AppendName(nil, codec.TypeRegister, 4, "calc") },
			check:  checkName("calc"),
		},
		{
			name:   "unregister",
			title:  `UNREGISTER corr=5: name "calc" (the whole body, no length byte)`,
			fields: []goldenField{rest(`name = "calc"`)},
			build:  func() []byte { return codec.AppendName(nil, codec.TypeUnregister, 5, "calc") },
			check:  checkName("calc"),
		},
		{
			name:   "send_ack",
			title:  `SEND flags=ACK corr=6: to "bob", payload "hello"`,
			fields: []goldenField{str8(`name str8 = 3 "bob"`), rest(`payload = "hello"`)},
			build:  func() []byte { return codec.AppendSend(nil, codec.FlagAck, 6, "bob", []byte("hello")) },
			check:  checkSend("bob", "hello"),
		},
		{
			name:   "send",
			title:  `SEND corr=0 (fire and forget): to "bob", payload "hello"`,
			fields: []goldenField{str8(`name str8 = 3 "bob"`), rest(`payload = "hello"`)},
			build:  func() []byte { return codec.AppendSend(nil, 0, 0, "bob", []byte("hello")) },
			check:  checkSend("bob", "hello"),
		},
		{
			name:  "request",
			title: `REQUEST corr=7: to "calc", timeout 2500 ms, payload "2+2"`,
			fields: []goldenField{str8(`name str8 = 4 "calc"`), u32("timeout ms u32 = 2500"),
				rest(`payload = "2+2"`)},
			build: func() []byte { return codec.AppendRequest(nil, 7, "calc", 2500, []byte("2+2")) },
			check: func(t *testing.T, f codec.Frame) {
				name, timeout, payload, err := codec.ParseRequest(f.Body)
				checkParsed(t, []any{string(name), timeout, string(payload)}, err, []any{"calc", uint32(2500), "2+2"})
			},
		},
		{
			name:  "incoming",
			title: `INCOMING corr=0: reply token 0x0001020000090001, from conn n1/l2/s5/g3 "alice", payload "2+2"`,
			fields: []goldenField{u64("reply token u64 = 0x0001020000090001 (opaque)"),
				u64("from conn id u64 = 0x0001020000050003"), str8(`from name str8 = 5 "alice"`),
				rest(`payload = "2+2"`)},
			build: func() []byte {
				return codec.AppendIncoming(nil, replyToken, aliceConn, []byte("alice"), []byte("2+2"))
			},
			check: func(t *testing.T, f codec.Frame) {
				token, from, name, payload, err := codec.ParseIncoming(f.Body)
				checkParsed(t, []any{token, from, string(name), string(payload)}, err,
					[]any{uint64(replyToken), uint64(aliceConn), "alice", "2+2"})
			},
		},
		{
			name:   "reply",
			title:  `REPLY corr=0: reply token 0x0001020000090001, payload "4"`,
			fields: []goldenField{u64("reply token u64 = 0x0001020000090001 (from INCOMING)"), rest(`payload = "4"`)},
			build:  func() []byte { return codec.AppendReply(nil, 0, replyToken, []byte("4")) },
			check: func(t *testing.T, f codec.Frame) {
				token, payload, err := codec.ParseReply(f.Body)
				checkParsed(t, []any{token, string(payload)}, err, []any{uint64(replyToken), "4"})
			},
		},
		{
			name:   "response",
			title:  `RESPONSE corr=7 (the REQUEST's corr): payload "4"`,
			fields: []goldenField{rest(`payload = "4" (the REPLY's payload)`)},
			build:  func() []byte { return codec.AppendFrame(nil, codec.TypeResponse, 0, 7, []byte("4")) },
			check:  checkOpaque("4"),
		},
		{
			name:  "message",
			title: `MESSAGE corr=0: from conn n1/l2/s5/g3 "alice", payload "hello"`,
			fields: []goldenField{u64("from conn id u64 = 0x0001020000050003"),
				str8(`from name str8 = 5 "alice"`), rest(`payload = "hello"`)},
			build: func() []byte { return codec.AppendMessage(nil, aliceConn, []byte("alice"), []byte("hello")) },
			check: func(t *testing.T, f codec.Frame) {
				from, name, payload, err := codec.ParseMessage(f.Body)
				checkParsed(t, []any{from, string(name), string(payload)}, err, []any{uint64(aliceConn), "alice", "hello"})
			},
		},
		{
			name:   "ok",
			title:  `OK corr=6 (empty body)`,
			fields: nil,
			build:  func() []byte { return codec.AppendFrame(nil, codec.TypeOK, 0, 6, nil) },
			check:  checkOpaque(""),
		},
		{
			name:  "error_queue_full",
			title: `ERROR corr=6: QUEUE_FULL, no retry-after, no flags, reason "queue towards the target is full; retry later", no addresses`,
			fields: []goldenField{u16("code u16 = 9 QUEUE_FULL"), u32("retry-after ms u32 = 0"),
				u8("flags u8 = 0x00"), str8(`reason str8 = 45 "queue towards the target is full; retry later"`), u8("address count u8 = 0")},
			build: func() []byte { return codec.AppendError(nil, 6, errorQueueFull) },
			check: func(t *testing.T, f codec.Frame) {
				e, err := codec.ParseError(f.Body)
				checkParsed(t, e, err, errorQueueFull)
			},
		},
		{
			name:  "error_busy_addrs",
			title: `ERROR corr=0: BUSY, retry after 1000 ms, flags CLOSING|RECONNECT|TRY_OTHER, reason "connection limit reached", 2 addresses`,
			fields: []goldenField{u16("code u16 = 7 BUSY"), u32("retry-after ms u32 = 1000"),
				u8("flags u8 = 0x07 CLOSING|RECONNECT|TRY_OTHER"), str8(`reason str8 = 24 "connection limit reached"`),
				u8("address count u8 = 2"), str8(`address str8 = 13 "10.0.0.2:7400"`),
				str8(`address str8 = 13 "10.0.0.3:7400"`)},
			build: func() []byte { return codec.AppendError(nil, 0, errorBusy) },
			check: func(t *testing.T, f codec.Frame) {
				e, err := codec.ParseError(f.Body)
				checkParsed(t, e, err, errorBusy)
			},
		},
		{
			name:  "error_forbidden",
			title: `ERROR corr=8: FORBIDDEN, no retry-after, no flags, reason "user may not SEND to this name", no addresses`,
			fields: []goldenField{u16("code u16 = 19 FORBIDDEN"), u32("retry-after ms u32 = 0"),
				u8("flags u8 = 0x00"), str8(`reason str8 = 30 "user may not SEND to this name"`), u8("address count u8 = 0")},
			build: func() []byte { return codec.AppendError(nil, 8, errorForbidden) },
			check: func(t *testing.T, f codec.Frame) {
				e, err := codec.ParseError(f.Body)
				checkParsed(t, e, err, errorForbidden)
			},
		},
		{
			name:  "goaway",
			title: `GOAWAY corr=0: reconnect at once (0 ms), reason "node draining", 1 address`,
			fields: []goldenField{u32("reconnect-after ms u32 = 0"), str8(`reason str8 = 13 "node draining"`),
				u8("address count u8 = 1"), str8(`address str8 = 13 "10.0.0.2:7400"`)},
			build: func() []byte { return codec.AppendGoAway(nil, goAway) },
			check: func(t *testing.T, f codec.Frame) {
				g, err := codec.ParseGoAway(f.Body)
				checkParsed(t, g, err, goAway)
			},
		},
		{
			name:   "goodbye",
			title:  `GOODBYE corr=0 (empty body)`,
			fields: nil,
			build:  func() []byte { return codec.AppendFrame(nil, codec.TypeGoodbye, 0, 0, nil) },
			check:  checkOpaque(""),
		},
	}
}

var (
	// The values are the server's own (route.go, accept.go, auth.go, drain.go).
	errorQueueFull = codec.ErrorBody{Code: codec.CodeQueueFull, Reason: "queue towards the target is full; retry later"}
	errorForbidden = codec.ErrorBody{Code: codec.CodeForbidden, Reason: "user may not SEND to this name"}
	errorBusy      = codec.ErrorBody{Code: codec.CodeBusy, RetryAfterMs: 1000,
		Flags:  codec.ErrFlagClosing | codec.ErrFlagReconnect | codec.ErrFlagTryOther,
		Reason: "connection limit reached", Addrs: []string{"10.0.0.2:7400", "10.0.0.3:7400"}}
	goAway = codec.GoAway{Reason: "node draining", Addrs: []string{"10.0.0.2:7400"}}
)

func checkParsed(t *testing.T, got any, err error, want any) {
	t.Helper()
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parse: got %+v; want %+v", got, want)
	}
}

func checkOpaque(want string) func(*testing.T, codec.Frame) {
	return func(t *testing.T, f codec.Frame) {
		t.Helper()
		if string(f.Body) != want {
			t.Fatalf("body: got %q; want %q", f.Body, want)
		}
	}
}

func checkName(want string) func(*testing.T, codec.Frame) {
	return func(t *testing.T, f codec.Frame) {
		name, err := codec.ParseName(f.Body)
		checkParsed(t, string(name), err, want)
	}
}

func checkSend(wantName, wantPayload string) func(*testing.T, codec.Frame) {
	return func(t *testing.T, f codec.Frame) {
		name, payload, err := codec.ParseSend(f.Body)
		checkParsed(t, []string{string(name), string(payload)}, err, []string{wantName, wantPayload})
	}
}

// formatGolden renders frame b as a golden file: a title comment, then for the header and
// for each body field a comment line naming it followed by a line with its hex. It fails if the field sizes do not add up to the frame.
func formatGolden(c goldenCase, b []byte) (string, error) {
	if len(b) < codec.HeaderLen {
		return "", fmt.Errorf("frame of %d bytes is shorter than the header", len(b))
	}
	var out strings.Builder
	fmt.Fprintf(&out, "# %s\n", c.title)
	fmt.Fprintf(&out, "# len u32 = %d | type u8 = 0x%02x %v | flags u8 = 0x%02x | corr u32 = %d\n",
		binary.BigEndian.Uint32(b), b[4], codec.Type(b[4]), b[5], binary.BigEndian.Uint32(b[6:]))
	fmt.Fprintf(&out, "%x %x %x %x\n", b[0:4], b[4:5], b[5:6], b[6:10])
	r := b[codec.HeaderLen:]
	for _, fld := range c.fields {
		fmt.Fprintf(&out, "# %s\n", fld.desc)
		var groups []string
		prev := 0
		for _, n := range fld.sizes {
			switch n {
			case -1: // the rest of the frame
				n = len(r)
			case -2: // as many bytes as the preceding length byte says
				n = prev
			}
			if n > len(r) {
				return "", fmt.Errorf("field %q: need %d bytes, have %d", fld.desc, n, len(r))
			}
			if n == 1 {
				prev = int(r[0])
			}
			if n > 0 {
				groups = append(groups, hex.EncodeToString(r[:n]))
			}
			r = r[n:]
		}
		if len(groups) == 0 {
			groups = []string{"# (empty)"}
		}
		out.WriteString(strings.Join(groups, " ") + "\n")
	}
	if len(r) != 0 {
		return "", fmt.Errorf("%d bytes left after the last field", len(r))
	}
	return out.String(), nil
}

// parseHex decodes golden-file text: lines starting with '#' are comments, whitespace is
// ignored, and hex digits must be lowercase.
func parseHex(text string) ([]byte, error) {
	var digits strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, r := range line {
			switch {
			case r == ' ' || r == '\t':
			case r >= '0' && r <= '9', r >= 'a' && r <= 'f':
				digits.WriteRune(r)
			default:
				return nil, fmt.Errorf("unexpected %q in hex (digits must be lowercase)", r)
			}
		}
	}
	return hex.DecodeString(digits.String())
}

func goldenPath(name string) string { return filepath.Join(goldenDir, name+".hex") }

func TestGolden(t *testing.T) {
	cases := goldenCases()
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.name+".hex"] = true
		t.Run(c.name, func(t *testing.T) {
			built := c.build()
			text, err := formatGolden(c, built)
			if err != nil {
				t.Fatalf("formatGolden: %v", err)
			}
			if *update {
				if err := os.WriteFile(goldenPath(c.name), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			raw, err := os.ReadFile(goldenPath(c.name))
			if err != nil {
				t.Fatalf("%v (run go test ./codec -run TestGolden -update to create it)", err)
			}
			if string(raw) != text {
				t.Errorf("file text differs from the generated text (run with -update and review):\ngot:\n%s\nwant:\n%s", raw, text)
			}
			want, err := parseHex(string(raw))
			if err != nil {
				t.Fatalf("parseHex: %v", err)
			}
			if !bytes.Equal(built, want) {
				t.Fatalf("encoder output differs from %s:\ngot  %x\nwant %x", goldenPath(c.name), built, want)
			}
			f, n, err := codec.Decode(want, codec.DefaultMaxFrame)
			if err != nil || n != len(want) {
				t.Fatalf("Decode: got n=%d err=%v; want n=%d nil", n, err, len(want))
			}
			if err := codec.ValidateBody(f.Type, f.Body); err != nil {
				t.Fatalf("ValidateBody: %v", err)
			}
			c.check(t, f)
		})
	}
	// Every file in the directory belongs to a case, so none goes stale unnoticed.
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !seen[e.Name()] {
			t.Errorf("%s has no case in goldenCases", filepath.Join(goldenDir, e.Name()))
		}
	}
}

// goldenBlock matches a marker line and the fenced hex block after it.
var goldenBlock = regexp.MustCompile("(?m)^<!-- golden: ([a-z0-9_]+) -->\n```hex\n((?:[^`]*\n)?)```")

// TestProtocolDocVectors checks that every hex example in docs/PROTOCOL.md equals its
// golden file, and that every golden file appears in the document.
func TestProtocolDocVectors(t *testing.T) {
	doc, err := os.ReadFile(protoDoc)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		doc = goldenBlock.ReplaceAllFunc(doc, func(m []byte) []byte {
			name := string(goldenBlock.FindSubmatch(m)[1])
			raw, err := os.ReadFile(goldenPath(name))
			if err != nil {
				return m // reported below
			}
			return []byte("<!-- golden: " + name + " -->\n```hex\n" + string(raw) + "```")
		})
		if err := os.WriteFile(protoDoc, doc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n := bytes.Count(doc, []byte("<!-- golden:")); n != len(goldenBlock.FindAll(doc, -1)) {
		t.Errorf("%d golden markers but %d are directly followed by a ```hex block", n, len(goldenBlock.FindAll(doc, -1)))
	}
	inDoc := map[string]bool{}
	for _, m := range goldenBlock.FindAllSubmatch(doc, -1) {
		name, block := string(m[1]), string(m[2])
		if inDoc[name] {
			t.Errorf("golden %q appears twice in %s", name, protoDoc)
		}
		inDoc[name] = true
		raw, err := os.ReadFile(goldenPath(name))
		if err != nil {
			t.Errorf("golden %q: %v", name, err)
			continue
		}
		if block != string(raw) {
			t.Errorf("golden %q: %s block differs from %s (run go test ./codec -run 'TestGolden|TestProtocolDocVectors' -update)\ngot:\n%s\nwant:\n%s",
				name, protoDoc, goldenPath(name), block, raw)
		}
		docBytes, err := parseHex(block)
		if err != nil {
			t.Errorf("golden %q in %s: %v", name, protoDoc, err)
		}
		fileBytes, _ := parseHex(string(raw))
		if !bytes.Equal(docBytes, fileBytes) {
			t.Errorf("golden %q: bytes differ:\ndoc  %x\nfile %x", name, docBytes, fileBytes)
		}
	}
	for _, c := range goldenCases() {
		if !inDoc[c.name] {
			t.Errorf("golden %q is not in %s (add <!-- golden: %s --> and a ```hex block)", c.name, protoDoc, c.name)
		}
	}
}
