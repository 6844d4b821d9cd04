package proxyproto

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Version 1 and 2 signatures, and the sizes Parse works with.
const (
	// v1Sig starts a version 1 header, which ends at the first CRLF.
	v1Sig = "PROXY "
	// v1Max is the longest version 1 header, CRLF included.
	v1Max = 107
	// v2Sig starts a version 2 header; a 4-byte fixed part and the length follow.
	v2Sig = "\r\n\r\n\x00\r\nQUIT\n"
	// v2Fixed is the signature, version/command, family/protocol and length.
	v2Fixed = 16
	// MaxPeek is the most bytes Parse needs to decide: a version 1 header is at most 107
	// bytes; a version 2 header's addresses end by byte 52.
	MaxPeek = v1Max
)

// Command says whether the header describes a relayed connection.
type Command uint8

const (
	// Local: the proxy's own connection (a health check), or version 1's UNKNOWN: the
	// peer address is the real one.
	Local Command = iota
	// Proxy: a relayed connection; Source is the client.
	Proxy
)

func (c Command) String() string {
	if c == Proxy {
		return "PROXY"
	}
	return "LOCAL"
}

// Header is a parsed PROXY header.
type Header struct {
	Version int // 1 or 2
	Command Command
	// Source and Dest are the client's and the proxy's (listening) addresses; zero unless
	// Command is Proxy and the family is IPv4 or IPv6.
	Source, Dest netip.AddrPort
}

// Parse reads a PROXY header at the start of b. It returns the header and its length in
// bytes, which for a version 2 header with TLVs may exceed len(b): the caller skips the
// rest. Errors: ErrShort when b is a prefix of what may be a header (call again with
// more; Parse never needs more than MaxPeek bytes), ErrNotProxy when b starts with
// neither signature, ErrInvalid (wrapped) when the header is malformed. Parse never
// looks past the header, and a shorter prefix of b never gives a different answer other
// than ErrShort.
func Parse(b []byte) (Header, int, error) {
	switch {
	case hasPrefix(b, v1Sig):
		return parseV1(b)
	case hasPrefix(b, v2Sig):
		return parseV2(b)
	case len(b) < len(v1Sig) && hasPrefix([]byte(v1Sig), string(b)),
		len(b) < len(v2Sig) && hasPrefix([]byte(v2Sig), string(b)):
		return Header{}, 0, ErrShort
	}
	return Header{}, 0, ErrNotProxy
}

// Signature reports whether b starts like a PROXY header (either version), judging by
// at most the signature's length; b must hold at least 4 bytes for a yes.
func Signature(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	for _, sig := range []string{v1Sig, v2Sig} {
		n := min(len(b), len(sig))
		if string(b[:n]) == sig[:n] {
			return true
		}
	}
	return false
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// parseV1 parses "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN...\r\n".
func parseV1(b []byte) (Header, int, error) {
	end := bytes.Index(b[:min(len(b), v1Max)], []byte("\r\n"))
	if end < 0 {
		if len(b) < v1Max {
			return Header{}, 0, ErrShort
		}
		return Header{}, 0, invalid("version 1 header without CRLF in %d bytes", v1Max)
	}
	n := end + 2
	line := string(b[len(v1Sig):end])
	h := Header{Version: 1}
	if line == "UNKNOWN" || len(line) > len("UNKNOWN") && line[:len("UNKNOWN ")] == "UNKNOWN " {
		return h, n, nil // the receiver must ignore the rest of the line
	}
	var f [5]string
	k := 0
	for i := 0; k < 5; k++ {
		j := i
		for j < len(line) && line[j] != ' ' {
			j++
		}
		f[k] = line[i:j]
		if f[k] == "" {
			return Header{}, 0, invalid("version 1: want PROXY TCP4|TCP6 src dst sport dport, got %q", line)
		}
		if j == len(line) {
			k++
			break
		}
		i = j + 1
	}
	if k != 5 || len(f[0])+len(f[1])+len(f[2])+len(f[3])+len(f[4])+4 != len(line) {
		return Header{}, 0, invalid("version 1: want PROXY TCP4|TCP6 src dst sport dport, got %q", line)
	}
	var want4 bool
	switch f[0] {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return Header{}, 0, invalid("version 1: unknown protocol %q", f[0])
	}
	var addrs [2]netip.Addr
	for i, s := range f[1:3] {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.Is4() != want4 {
			return Header{}, 0, invalid("version 1: bad %s address %q", f[0], s)
		}
		addrs[i] = a
	}
	var ports [2]uint16
	for i, s := range f[3:5] {
		p, ok := parsePort(s)
		if !ok {
			return Header{}, 0, invalid("version 1: bad port %q", s)
		}
		ports[i] = p
	}
	h.Command = Proxy
	h.Source = netip.AddrPortFrom(addrs[0], ports[0])
	h.Dest = netip.AddrPortFrom(addrs[1], ports[1])
	return h, n, nil
}

// parsePort accepts 0..65535 in decimal without a sign or a leading zero.
func parsePort(s string) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// Version 2 families (high nibble) and protocols (low nibble) of byte 13.
const (
	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3
	protoSpec = 0x0
	protoTCP  = 0x1
	protoUDP  = 0x2
)

func parseV2(b []byte) (Header, int, error) {
	if len(b) < v2Fixed {
		return Header{}, 0, ErrShort
	}
	verCmd, famProto := b[12], b[13]
	if verCmd>>4 != 2 {
		return Header{}, 0, invalid("version 2: version nibble %d", verCmd>>4)
	}
	length := int(binary.BigEndian.Uint16(b[14:16]))
	n := v2Fixed + length
	h := Header{Version: 2}
	switch verCmd & 0xf {
	case 0:
		return h, n, nil // LOCAL: family and addresses are to be ignored
	case 1:
	default:
		return Header{}, 0, invalid("version 2: unknown command %d", verCmd&0xf)
	}
	fam, proto := famProto>>4, famProto&0xf
	if proto > protoUDP || fam > famUnix {
		return Header{}, 0, invalid("version 2: unknown family/protocol 0x%02x", famProto)
	}
	if proto == protoUDP {
		return Header{}, 0, invalid("version 2: a datagram header on a stream connection")
	}
	var alen int
	switch fam {
	case famUnspec:
		h.Command = Proxy
		return h, n, nil
	case famInet:
		alen = 12
	case famInet6:
		alen = 36
	case famUnix:
		alen = 216
	}
	if proto == protoSpec {
		return Header{}, 0, invalid("version 2: family %d with protocol UNSPEC", fam)
	}
	if length < alen {
		return Header{}, 0, invalid("version 2: length %d is shorter than the addresses (%d)", length, alen)
	}
	h.Command = Proxy
	if fam == famUnix {
		return h, n, nil // no IP addresses to report
	}
	if len(b) < v2Fixed+alen {
		return Header{}, 0, ErrShort
	}
	a := b[v2Fixed:]
	if fam == famInet {
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	} else {
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	return h, n, nil
}
