package proxyproto

import (
	"errors"
	"net/netip"
	"testing"
)

// FuzzProxyHeader checks that Parse never panics, never claims a header shorter than its
// signature, and gives the same answer for every prefix of the input that is not
// ErrShort: a header split across reads parses the same.
func FuzzProxyHeader(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 203.0.113.7 192.0.2.1 51234 7400\r\n",
		"PROXY TCP6 2001:db8::7 2001:db8::1 51234 7400\r\nHELLO",
		"PROXY UNKNOWN\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
		"\x00\x00\x00\x10\x01",
	} {
		f.Add([]byte(s))
	}
	f.Add(AppendV2(nil, Proxy, src4, dst4, nil))
	f.Add(AppendV2(nil, Proxy, src6, dst6, []byte{4, 0, 1, 0}))
	f.Add(AppendV2(nil, Local, netip.AddrPort{}, netip.AddrPort{}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err == nil {
			if n < len(v1Sig) || n < 16 && h.Version == 2 {
				t.Fatalf("header of %d bytes", n)
			}
			if h.Version == 1 && n > len(b) {
				t.Fatalf("v1 header of %d bytes in %d", n, len(b))
			}
			if h.Command != Proxy && h.Source.IsValid() {
				t.Fatalf("%v header with a source", h.Command)
			}
		}
		for i := range len(b) {
			ph, pn, perr := Parse(b[:i])
			if errors.Is(perr, ErrShort) {
				continue
			}
			if ph != h || pn != n || errString(perr) != errString(err) {
				t.Fatalf("prefix of %d bytes: %+v, %d, %v; whole: %+v, %d, %v", i, ph, pn, perr, h, n, err)
			}
		}
		if errors.Is(err, ErrShort) && len(b) >= MaxPeek {
			t.Fatalf("ErrShort after %d bytes (MaxPeek %d)", len(b), MaxPeek)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
