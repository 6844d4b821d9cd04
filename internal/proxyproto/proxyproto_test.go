package proxyproto

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

var (
	src4 = netip.MustParseAddrPort("203.0.113.7:51234")
	dst4 = netip.MustParseAddrPort("192.0.2.1:7400")
	src6 = netip.MustParseAddrPort("[2001:db8::7]:51234")
	dst6 = netip.MustParseAddrPort("[2001:db8::1]:7400")
)

func TestParse(t *testing.T) {
	tlv := []byte{0x04, 0x00, 0x03, 'a', 'b', 'c'} // PP2_TYPE_NOOP
	for _, tt := range []struct {
		name string
		in   string
		want Header
		n    int // 0: the whole input
	}{
		{"v1 TCP4", "PROXY TCP4 203.0.113.7 192.0.2.1 51234 7400\r\n", Header{1, Proxy, src4, dst4}, 0},
		{"v1 TCP6", "PROXY TCP6 2001:db8::7 2001:db8::1 51234 7400\r\n", Header{1, Proxy, src6, dst6}, 0},
		{"v1 UNKNOWN", "PROXY UNKNOWN\r\n", Header{Version: 1}, 0},
		{"v1 UNKNOWN with addresses", "PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", Header{Version: 1}, 0},
		{"v1 port 0", "PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n",
			Header{1, Proxy, netip.MustParseAddrPort("1.2.3.4:0"), netip.MustParseAddrPort("5.6.7.8:65535")}, 0},
		{"v1 then data", "PROXY TCP4 203.0.113.7 192.0.2.1 51234 7400\r\nHELLO", Header{1, Proxy, src4, dst4}, 45},
		{"v2 TCP4", string(AppendV2(nil, Proxy, src4, dst4, nil)), Header{2, Proxy, src4, dst4}, 0},
		{"v2 TCP6", string(AppendV2(nil, Proxy, src6, dst6, nil)), Header{2, Proxy, src6, dst6}, 0},
		{"v2 LOCAL", string(AppendV2(nil, Local, src4, dst4, nil)), Header{Version: 2}, 0},
		{"v2 TCP4 with TLV", string(AppendV2(nil, Proxy, src4, dst4, tlv)), Header{2, Proxy, src4, dst4}, 0},
		{"v2 UNSPEC", v2Sig + "\x21\x00\x00\x00", Header{Version: 2, Command: Proxy}, 0},
		{"v2 UNIX", v2Sig + "\x21\x31\x00\xd8" + strings.Repeat("\x00", 216), Header{Version: 2, Command: Proxy}, 0},
		{"v2 then data", string(AppendV2(nil, Proxy, src4, dst4, nil)) + "HELLO", Header{2, Proxy, src4, dst4}, 28},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := tt.n
			if want == 0 {
				want = len(tt.in)
			}
			if h != tt.want || n != want {
				t.Errorf("got %+v, %d; want %+v, %d", h, n, tt.want, want)
			}
			for i := range min(len(tt.in), want) {
				ph, pn, err := Parse([]byte(tt.in[:i]))
				if !errors.Is(err, ErrShort) && (err != nil || ph != h || pn != n) {
					t.Errorf("Parse of %d-byte prefix: %+v, %d, %v; want ErrShort or the same", i, ph, pn, err)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     error
	}{
		{"HELLO frame", "\x00\x00\x00\x10\x01\x00\x00\x00", ErrNotProxy},
		{"lower case", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ErrNotProxy},
		{"v1 no CRLF in 107", "PROXY TCP4 " + strings.Repeat("1", 100), ErrInvalid},
		{"v1 LF only", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + strings.Repeat("x", 100), ErrInvalid},
		{"v1 TCP5", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", ErrInvalid},
		{"v1 v6 in TCP4", "PROXY TCP4 ::1 ::2 1 2\r\n", ErrInvalid},
		{"v1 v4 in TCP6", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", ErrInvalid},
		{"v1 zone", "PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n", ErrInvalid},
		{"v1 port too big", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", ErrInvalid},
		{"v1 leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", ErrInvalid},
		{"v1 signed port", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", ErrInvalid},
		{"v1 two spaces", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", ErrInvalid},
		{"v1 too few", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ErrInvalid},
		{"v1 too many", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", ErrInvalid},
		{"v1 trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", ErrInvalid},
		{"v1 empty", "PROXY \r\n", ErrInvalid},
		{"v2 version 1", v2Sig + "\x11\x11\x00\x0c" + strings.Repeat("\x00", 12), ErrInvalid},
		{"v2 command 2", v2Sig + "\x22\x11\x00\x0c" + strings.Repeat("\x00", 12), ErrInvalid},
		{"v2 UDP", v2Sig + "\x21\x12\x00\x0c" + strings.Repeat("\x00", 12), ErrInvalid},
		{"v2 family 4", v2Sig + "\x21\x41\x00\x0c" + strings.Repeat("\x00", 12), ErrInvalid},
		{"v2 INET short length", v2Sig + "\x21\x11\x00\x0b" + strings.Repeat("\x00", 12), ErrInvalid},
		{"v2 INET6 short length", v2Sig + "\x21\x21\x00\x0c" + strings.Repeat("\x00", 36), ErrInvalid},
		{"v2 INET UNSPEC proto", v2Sig + "\x21\x10\x00\x0c" + strings.Repeat("\x00", 12), ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Parse([]byte(tt.in)); !errors.Is(err, tt.want) {
				t.Errorf("Parse(%q) = %v; want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestSignature(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"PROX", true}, {"PROXY TCP4", true}, {"\r\n\r\n", true}, {v2Sig + "\x21", true},
		{"PRO", false}, {"PROXz", false}, {"\x00\x00\x00\x10", false}, {"\r\n\r\r", false},
	} {
		if got := Signature([]byte(tt.in)); got != tt.want {
			t.Errorf("Signature(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestAppendV1RoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name     string
		src, dst netip.AddrPort
		want     Header
	}{
		{"TCP4", src4, dst4, Header{1, Proxy, src4, dst4}},
		{"TCP6", src6, dst6, Header{1, Proxy, src6, dst6}},
		{"mixed is UNKNOWN", src4, dst6, Header{Version: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendV1(nil, tt.src, tt.dst)
			h, n, err := Parse(b)
			if err != nil || h != tt.want || n != len(b) {
				t.Errorf("Parse(AppendV1) = %+v, %d, %v; want %+v, %d", h, n, err, tt.want, len(b))
			}
		})
	}
}

func TestMaxPeekSuffices(t *testing.T) {
	// The specification's worst case.
	longest := "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	if len(longest) != MaxPeek {
		t.Fatalf("longest v1 header is %d bytes; MaxPeek %d", len(longest), MaxPeek)
	}
	if _, n, err := Parse([]byte(longest)); err != nil || n != MaxPeek {
		t.Fatalf("Parse(longest) = %d, %v", n, err)
	}
	tcp6 := strings.Replace(longest, "UNKNOWN", "TCP6", 1)
	if _, n, err := Parse([]byte(tcp6)); err != nil || n != len(tcp6) {
		t.Fatalf("Parse(longest) = %d, %v", n, err)
	}
	b := AppendV2(nil, Proxy, src6, dst6, make([]byte, 1000))
	if _, n, err := Parse(b[:MaxPeek]); err != nil || n != len(b) {
		t.Fatalf("Parse(v2 with TLVs, first %d bytes) = %d, %v; want %d", MaxPeek, n, err, len(b))
	}
}
