package proxyproto

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// AppendV1 appends a version 1 header for a TCP connection from src to dst: TCP4 when
// both are IPv4, TCP6 when both are IPv6, UNKNOWN otherwise (mixed or invalid).
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	s, d := src.Addr(), dst.Addr()
	var proto string
	switch {
	case s.Is4() && d.Is4():
		proto = "TCP4"
	case s.Is6() && d.Is6() && s.Zone() == "" && d.Zone() == "":
		proto = "TCP6"
	default:
		return append(b, v1Sig+"UNKNOWN\r\n"...)
	}
	b = append(b, v1Sig+proto+" "...)
	b = s.AppendTo(b)
	b = append(b, ' ')
	b = d.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, "\r\n"...)
}

// AppendV2 appends a version 2 header. With Local, or with addresses that are neither
// both IPv4 nor both IPv6, the header carries no addresses. tlvs, already encoded, follow
// the addresses (they are counted in the length, and Parse skips them).
func AppendV2(b []byte, cmd Command, src, dst netip.AddrPort, tlvs []byte) []byte {
	b = append(b, v2Sig...)
	s, d := src.Addr(), dst.Addr()
	var fam byte
	var addrs []byte
	switch {
	case cmd == Local:
	case s.Is4() && d.Is4():
		fam = famInet<<4 | protoTCP
		s4, d4 := s.As4(), d.As4()
		addrs = append(append(addrs, s4[:]...), d4[:]...)
	case s.Is6() && d.Is6():
		fam = famInet6<<4 | protoTCP
		s16, d16 := s.As16(), d.As16()
		addrs = append(append(addrs, s16[:]...), d16[:]...)
	}
	if addrs != nil {
		addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
		addrs = binary.BigEndian.AppendUint16(addrs, dst.Port())
	}
	b = append(b, 0x20|byte(cmd), fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+len(tlvs)))
	b = append(b, addrs...)
	return append(b, tlvs...)
}
