package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/proxyproto"
)

// PROXY protocol on the client listener (Config.ProxyProtocolFrom).
//
// A connection from a trusted proxy must start with a PROXY header (v1 or v2); its source
// address becomes the connection's address (c.ip) for per-IP limits and logs. The acceptor
// applies the node-wide admission tiers (draining, zone, connection cap, accept rate) at
// once and hands the connection to a header reader, a goroutine of its own, so that a proxy
// slow to send its header (or a half header) holds up nobody but itself: the acceptor
// returns to Accept at once. At most proxyHeaderReads headers are read at a time; past
// that a trusted connection is refused BUSY. A header must arrive within
// HandshakeTimeout of the accept (the handshake timer starts again at OnOpen).
//
// The reader must not consume a byte past the header: gnet takes the socket over at
// EnrollContext and reads it itself, so bytes already read here would be lost. It peeks
// (recv with MSG_PEEK) until proxyproto.Parse can decide, then reads exactly the header's
// length. A HELLO that arrived in the same segment stays in the socket for the loop.
//
// A PROXY header from an address not trusted is a protocol violation, answered ERROR
// BAD_FRAME by the loop (see callbacks.go): the loop sees it where it expects a frame,
// and its signature read as a length would otherwise give a puzzling FRAME_TOO_LARGE.

// proxyHeaderReads bounds the PROXY headers being read at once (each holds a goroutine and
// a descriptor; the descriptors count against max-connections like any connection).
const proxyHeaderReads = 256

// parseProxyFrom parses Config.ProxyProtocolFrom: comma-separated addresses and CIDR
// prefixes. IPv4-mapped IPv6 addresses are taken as IPv4.
func parseProxyFrom(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q is not an address or CIDR prefix", item))
				continue
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil || a.Zone() != "" {
			errs = append(errs, fmt.Errorf("%q is not an address or CIDR prefix", item))
			continue
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, errors.Join(errs...)
}

// trustsProxy reports whether a connection from ip must start with a PROXY header.
func (s *Server) trustsProxy(ip netip.Addr) bool {
	if len(s.proxyFrom) == 0 {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.proxyFrom {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// headerReads tracks the goroutines reading PROXY headers. The acceptor starts them and,
// when it exits, stops them and waits for them (before it closes refuseq, which they may
// still use).
type headerReads struct {
	mu      sync.Mutex
	pending map[*net.TCPConn]struct{} // guarded by mu
	wg      sync.WaitGroup
	stopped atomic.Bool // set by stop, before it interrupts the reads
}

// readProxyLater hands a connection from a trusted proxy, already admitted node-wide, to
// a header reader. Runs on the acceptor.
func (s *Server) readProxyLater(nc net.Conn, c *conn) {
	tc, ok := nc.(*net.TCPConn)
	h := &s.hdr
	h.mu.Lock()
	full := len(h.pending) >= proxyHeaderReads
	if ok && !full {
		if h.pending == nil {
			h.pending = make(map[*net.TCPConn]struct{})
		}
		h.pending[tc] = struct{}{}
		h.wg.Add(1)
	}
	h.mu.Unlock()
	switch {
	case !ok:
		_ = nc.Close() // the listener is TCP: cannot happen
		return
	case full:
		s.refuse(nc, refuseProxyHeader, codec.CodeBusy, 1000, "too many PROXY protocol headers pending")
		return
	}
	s.connCount.Add(1)
	go s.readProxied(tc, c, time.Now().Add(s.cfg.HandshakeTimeout))
}

// readProxied reads the PROXY header, applies the per-IP limit to the address it names
// and enrolls the connection. Runs on its own goroutine, tracked by s.hdr.
func (s *Server) readProxied(nc *net.TCPConn, c *conn, deadline time.Time) {
	defer s.hdr.done(nc)
	proxy := c.ip.Addr()
	h, err := readProxyHeader(nc, deadline, &s.hdr.stopped)
	if err != nil {
		s.connCount.Add(-1)
		s.refuseHeader(nc, proxy, err)
		return
	}
	if h.Source.IsValid() { // LOCAL (a health check) and UNKNOWN keep the proxy's address
		c.ip = peerIPOf(h.Source.Addr().Unmap())
	}
	if !s.admitIP(nc, c) {
		s.connCount.Add(-1)
		return
	}
	s.enroll(nc, c)
}

// refuseHeader answers a trusted connection whose PROXY header did not come, or was bad,
// and logs it (rate-limited): it is the proxy's fault, or the network's.
func (s *Server) refuseHeader(nc net.Conn, proxy netip.Addr, err error) {
	var code codec.ErrorCode
	var reason string
	switch {
	case s.hdr.stopped.Load():
		s.refuse(nc, refuseDraining, codec.CodeShuttingDown, 1000, "node is shutting down")
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		code, reason = codec.CodeHandshakeTimeout, "no PROXY protocol header in time"
	case errors.Is(err, proxyproto.ErrNotProxy):
		code, reason = codec.CodeBadFrame, "PROXY protocol header required from this address"
	case errors.Is(err, proxyproto.ErrInvalid):
		code, reason = codec.CodeBadFrame, err.Error()
	default: // closed or reset before a whole header: nobody to answer
		s.refused.Add(1)
		s.refusedBy[refuseProxyHeader].Add(1)
		_ = nc.Close()
		return
	}
	s.connLog.report(connLogEntry{ip: proxy, code: code, reason: reason})
	s.refuseWith(nc, refuseProxyHeader, code, 0, codec.ErrFlagClosing, reason)
}

func (h *headerReads) done(nc *net.TCPConn) {
	h.mu.Lock()
	delete(h.pending, nc)
	h.mu.Unlock()
	h.wg.Done()
}

// stop interrupts the header reads in progress and waits for their goroutines. Called by
// the acceptor as it exits, so that no reader starts afterwards.
func (h *headerReads) stop() {
	h.stopped.Store(true)
	h.mu.Lock()
	for nc := range h.pending {
		_ = nc.SetReadDeadline(time.Unix(1, 0))
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// errShortHeader: the peer closed its side in the middle of a header.
var errShortHeader = errors.New("server: connection closed inside the PROXY header")

// readProxyHeader reads a PROXY header from nc and nothing after it: it peeks at the
// socket until proxyproto.Parse decides (at most proxyproto.MaxPeek bytes), then reads
// exactly the header's length. It gives up at deadline (os.ErrDeadlineExceeded). A peer
// that sends part of a header and then closes is noticed only at the deadline: a peek
// cannot tell a FIN behind unread bytes from a pause.
func readProxyHeader(nc *net.TCPConn, deadline time.Time, stopped *atomic.Bool) (proxyproto.Header, error) {
	rc, err := nc.SyscallConn()
	if err != nil {
		return proxyproto.Header{}, err
	}
	if err := nc.SetReadDeadline(deadline); err != nil {
		return proxyproto.Header{}, err
	}
	// headerReads.stop sets stopped and then moves every pending read's deadline into the
	// past; a stop that came before the deadline above was set would be undone by it, so
	// look once more now.
	if stopped.Load() {
		return proxyproto.Header{}, os.ErrDeadlineExceeded
	}
	var (
		buf  [proxyproto.MaxPeek]byte
		h    proxyproto.Header
		n    int
		perr error
	)
	// RawConn.Read calls the function again whenever the socket becomes readable (the
	// poller is edge-triggered: each new segment is an edge), until it returns true or
	// the deadline passes.
	err = rc.Read(func(fd uintptr) bool {
		m, _, e := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
		switch {
		case e == syscall.EAGAIN || e == syscall.EINTR:
			return false
		case e != nil:
			perr = e
			return true
		case m == 0:
			perr = io.EOF
			return true
		}
		h, n, perr = proxyproto.Parse(buf[:m])
		return !errors.Is(perr, proxyproto.ErrShort) // wait for more
	})
	if err != nil {
		return proxyproto.Header{}, err
	}
	if perr != nil {
		return proxyproto.Header{}, perr
	}
	// Consume exactly the header (a v2 header's TLVs may be longer than what was peeked).
	for n > 0 {
		k := min(n, len(buf))
		if _, err := io.ReadFull(nc, buf[:k]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = errShortHeader
			}
			return proxyproto.Header{}, err
		}
		n -= k
	}
	if err := nc.SetReadDeadline(time.Time{}); err != nil {
		return proxyproto.Header{}, err
	}
	return h, nil
}

// unexpectedProxyReason answers a PROXY header where a frame was expected.
const unexpectedProxyReason = "unexpected PROXY protocol header: only proxy-protocol-from addresses may send one"

// frameError maps a decoding error at buf[off:] to the ERROR sent before closing: a PROXY
// signature at the start of a connection is named as such (read as a frame's length it is
// merely too large), the rest is the codec's own mapping.
func frameError(c *conn, buf []byte, off int, err error) (codec.ErrorCode, string) {
	if c.state == stateHandshake && off == 0 && proxyproto.Signature(buf) {
		return codec.CodeBadFrame, unexpectedProxyReason
	}
	return codec.CodeOf(err), err.Error()
}
