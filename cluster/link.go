package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// Links: seeing a killed node's process end as soon as its kernel does.
//
// A node killed with SIGKILL is taken for dead once its renewal is overdue and its
// probe subject has no responders (probe.go), and the second comes only when the
// survivors' NATS servers see its routes close. In a 100K-connection run the routes
// closed 1.9–2.9 s after the kill, while the killed node's clients saw their
// connections close from +0.2 s (docs/BENCHMARKS.md). The kernel closes a dead
// process's descriptors from the highest number down (a descriptor moved to the top
// closed with the first client socket, 1.1–2.0 s before the routes, in the whole-node
// runs of docs/BENCHMARKS.md "Links"), and the routes, opened at start, have low
// numbers: they close after the client sockets.
//
// So every node keeps one TCP connection, a link, to every other live node, and moves
// its end above every descriptor a client connection can get (F_DUPFD_CLOEXEC from
// linkFDFloor). It never reads it, and writes one byte after the ident only when it
// closes the link on purpose (the node it links to changed run or was taken for dead,
// the peer closed its end, a clean stop). Its peer reads its own end; when that ends with
// EOF or a reset and no such byte came — the node's kernel closed it: the process died,
// or its host reset the connection — the peer probes the node at once and, if the probe is not
// answered by the node's run (no responders, or no answer within probeTimeout), takes it
// for dead without waiting for the renewal to be overdue. A live node whose link was cut
// answers the probe and stays alive (and dials a new link); a hung node (SIGSTOP, a
// paused VM) closes nothing and is decided by its lease as before.
//
// How a node finds the others' link listeners: every node answers requests on its link
// subject, switchboard.<cluster>.link.<id>, with a token (8 random bytes, one per run) and
// the address to dial. The dialer presents its node id, its epoch and that token, so a
// link can be opened only by someone who can make requests in the cluster's NATS; a node
// that does not answer (an older version, links off) is simply not linked.

const (
	linkMagic      = "SBL1"
	linkIdentLen   = len(linkMagic) + 2 + 8 + 8 // magic, node id, epoch, token
	linkAskTimeout = time.Second                // the link subject's answer
	linkDialTime   = time.Second                // connecting and sending the ident
	linkAsks       = 3                          // no responders this many rounds in a row: the node has no links
	linkBye        = 'B'                        // the only byte ever sent after the ident: the dialer closes on purpose
	// linkFDRoom is how far below the open-file limit (or linkFDCeiling) the links'
	// descriptors start: room for one link per other node.
	linkFDRoom = 64
	// linkFDCeiling caps where the links' descriptors go: the kernel sizes a process's
	// descriptor table to its highest descriptor (8 bytes a slot, rounded up to a power
	// of two; arithmetic, not measured), so with a limit of millions the links go at
	// 262,080 and up (a 2 MiB table) rather than at the top. That is above the client
	// sockets of a node holding up to ~260K connections (the design's 100K included);
	// the client sockets of a larger node above it close before its links.
	linkFDCeiling = 1 << 18
)

// linkIdentTime is how long an accepted link's ident may take (a variable for a test).
var linkIdentTime = 5 * time.Second

// linkSubject is node's link subject.
func (d *Directory) linkSubject(node uint16) string {
	return subjectPrefix + "." + d.cfg.Name + ".link." + strconv.Itoa(int(node))
}

// appendLinkIdent appends a link's ident: magic, the dialer's node id and epoch, the
// token the linked node gave on its link subject.
func appendLinkIdent(dst []byte, node uint16, epoch uint64, token []byte) []byte {
	dst = append(dst, linkMagic...)
	dst = binary.BigEndian.AppendUint16(dst, node)
	dst = binary.BigEndian.AppendUint64(dst, epoch)
	return append(dst, token...)
}

// parseLinkIdent reads an ident appendLinkIdent wrote; false if the magic is not there.
func parseLinkIdent(b *[linkIdentLen]byte) (node uint16, epoch uint64, token []byte, ok bool) {
	rest, ok := bytes.CutPrefix(b[:], []byte(linkMagic))
	if !ok {
		return 0, 0, nil, false
	}
	return binary.BigEndian.Uint16(rest), binary.BigEndian.Uint64(rest[2:]), rest[10:], true
}

// linkIn is the end of another node's link this node reads.
type linkIn struct {
	node  uint16
	epoch uint64
	conn  net.Conn
}

// linkOut is this node's end of its link to another node's run.
type linkOut struct {
	epoch uint64   // the run linked to
	fd    int      // the descriptor moved above linkFDFloor; -1 when conn holds the link
	conn  net.Conn // only when the descriptor could not be moved
}

// close closes the link, first saying goodbye when bye (linkBye: this end closes on
// purpose, the process lives on or leaves cleanly). The socket is non-blocking and nothing
// but the ident was ever written to it, so the byte goes into an empty send buffer.
func (o linkOut) close(bye bool) {
	if o.conn != nil {
		if bye {
			_ = o.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = o.conn.Write([]byte{linkBye})
		}
		_ = o.conn.Close()
	}
	if o.fd >= 0 {
		if bye {
			_, _ = syscall.Write(o.fd, []byte{linkBye})
		}
		_ = syscall.Close(o.fd)
	}
}

// startLinks listens for links, answers the link subject and starts the dialer. With
// LinkListen "off" it does nothing.
func (d *Directory) startLinks() error {
	listen := d.cfg.LinkListen
	if listen == LinkOff {
		return nil
	}
	if listen == "" {
		host, _, err := net.SplitHostPort(d.cfg.Listen)
		if err != nil {
			return fmt.Errorf("cluster: link listener from %q: %w", d.cfg.Listen, err)
		}
		listen = net.JoinHostPort(host, "0")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("cluster: link listener: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		// Listening on every address: tell the others the host they reach this node's
		// routes by, if there is one to tell.
		if h, _, err := net.SplitHostPort(d.cfg.Advertise); err == nil && h != "" {
			host = h
		}
	}
	if _, err := rand.Read(d.linkToken[:]); err != nil {
		_ = ln.Close()
		return fmt.Errorf("cluster: link token: %w", err)
	}
	d.linkAddr = net.JoinHostPort(host, strconv.Itoa(addr.Port))
	d.linkLn = ln
	answer := append(append([]byte(nil), d.linkToken[:]...), d.linkAddr...)
	sub, err := d.nc.Subscribe(d.linkSubject(d.cfg.NodeID), func(m *nats.Msg) { _ = m.Respond(answer) })
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("cluster: subscribe %s: %w", d.linkSubject(d.cfg.NodeID), err)
	}
	d.linkSub = sub
	d.wg.Add(2)
	go d.acceptLinks()
	go d.linkLoop()
	d.log.Info("cluster links listening", "addr", d.linkAddr, "fd_floor", linkFDFloor())
	return nil
}

// stopLinks closes the listener and every accepted link (their losses are not reported:
// ctx has ended). The dialed links close as linkLoop returns.
func (d *Directory) stopLinks() {
	if d.linkSub != nil {
		_ = d.linkSub.Unsubscribe()
	}
	if d.linkLn != nil {
		_ = d.linkLn.Close()
	}
	d.lnmu.Lock()
	for node, l := range d.linksIn {
		_ = l.conn.Close()
		delete(d.linksIn, node)
	}
	for c := range d.linksNew {
		_ = c.Close()
	}
	d.lnmu.Unlock()
}

func (d *Directory) acceptLinks() {
	defer d.wg.Done()
	for {
		c, err := d.linkLn.Accept()
		if err != nil {
			if d.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Warn("accepting a cluster link failed", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-d.ctx.Done():
				return
			}
			continue
		}
		// Until its ident is read a link is in linksNew, which stopLinks closes, so that a
		// stop does not wait linkIdentTime for a silent peer. Anyone who reaches the port
		// can open one: at most linkIdentsMax wait at once, the rest are closed at once.
		d.lnmu.Lock()
		admit := d.ctx.Err() == nil && len(d.linksNew) < linkIdentsMax
		if admit {
			d.linksNew[c] = struct{}{}
		}
		d.lnmu.Unlock()
		if !admit {
			_ = c.Close()
			continue
		}
		d.wg.Add(1)
		go d.serveLink(c)
	}
}

// linkIdentsMax bounds the accepted links still waiting for their ident (a goroutine and
// a descriptor each, for up to linkIdentTime): a few per peer node is all a cluster needs.
const linkIdentsMax = 64

// serveLink checks an accepted link's ident and reads it until it ends. An end by EOF or
// reset while it is the node's current link, without a goodbye before it, is a loss
// (lostLink): a process whose kernel closed its sockets sent none.
func (d *Directory) serveLink(c net.Conn) {
	defer d.wg.Done()
	var b [linkIdentLen]byte // c is in linksNew (acceptLinks) until this is read
	_ = c.SetReadDeadline(time.Now().Add(linkIdentTime))
	_, err := io.ReadFull(c, b[:])
	d.lnmu.Lock()
	delete(d.linksNew, c)
	d.lnmu.Unlock()
	node, epoch, token, ok := parseLinkIdent(&b)
	if err != nil || !ok {
		_ = c.Close()
		return
	}
	if subtle.ConstantTimeCompare(token, d.linkToken[:]) != 1 || node == 0 || node == d.cfg.NodeID {
		d.log.Warn("refused a cluster link: wrong token or node id", "remote", c.RemoteAddr().String(), "node_id", node)
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	me := &linkIn{node: node, epoch: epoch, conn: c}
	d.lnmu.Lock()
	if d.ctx.Err() != nil {
		d.lnmu.Unlock()
		_ = c.Close()
		return
	}
	if old := d.linksIn[node]; old != nil {
		_ = old.conn.Close() // replaced: its end is not a loss
	}
	d.linksIn[node] = me
	d.lnmu.Unlock()
	d.lmu.Lock()
	delete(d.linkLost, node) // a process of that node is alive and linked
	d.lmu.Unlock()

	var buf [64]byte
	bye := false
	for err == nil {
		var n int
		n, err = c.Read(buf[:]) // only a goodbye is ever sent: this waits for the end
		bye = bye || n > 0
	}
	d.lnmu.Lock()
	current := d.linksIn[node] == me
	if current {
		delete(d.linksIn, node)
	}
	d.lnmu.Unlock()
	_ = c.Close()
	if current && !bye && d.ctx.Err() == nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		d.lostLink(node, epoch)
	}
}

// lostLink records that node's run epoch closed its link and asks probeLoop to probe it now.
func (d *Directory) lostLink(node uint16, epoch uint64) {
	d.lmu.Lock()
	d.linkLost[node] = epoch
	d.lmu.Unlock()
	d.linksLost.Add(1)
	d.log.Info("a cluster link closed: probing its node", "node_id", node, "epoch", epoch)
	select {
	case d.linkWake <- struct{}{}:
	default:
	}
}

// linkLostFor reports whether node's run epoch closed its link (and has not linked again).
func (d *Directory) linkLostFor(node uint16, epoch uint64) bool {
	d.lmu.RLock()
	e, ok := d.linkLost[node]
	d.lmu.RUnlock()
	return ok && e == epoch
}

// linkAlive forgets a lost link of node's run epoch: the run answered a probe.
func (d *Directory) linkAlive(node uint16, epoch uint64) {
	d.lmu.Lock()
	if e, ok := d.linkLost[node]; ok && e == epoch {
		delete(d.linkLost, node)
	}
	d.lmu.Unlock()
}

// linkLoop keeps one link to every other live run, every LeaseRenew and whenever the
// leases watch sees a new run: it dials runs not linked yet, and closes links to runs
// gone and links their peer closed (dialed again on the next round).
func (d *Directory) linkLoop() {
	defer d.wg.Done()
	out := make(map[uint16]linkOut)
	// Runs whose link subject had no responders linkAsks times in a row (an older
	// version, or links off): not asked again. Not at the first: a node takes its lease
	// a moment before it answers on its link subject.
	unlinked := make(map[uint16]uint64)
	noAnswer := make(map[uint16]int)
	defer func() {
		d.lnmu.Lock()
		defer d.lnmu.Unlock()
		for _, o := range out {
			if d.hangLinks.Load() {
				d.hungLinks = append(d.hungLinks, o)
				continue
			}
			// A clean stop says goodbye; a stop without release (Node.kill, a failed
			// start) closes the links as the kernel closes a killed process's.
			o.close(d.release.Load())
		}
	}()
	t := time.NewTicker(d.cfg.LeaseRenew)
	defer t.Stop()
	for {
		want := make(map[uint16]uint64)
		d.lmu.RLock()
		for node, l := range d.liveNodes {
			if node != d.cfg.NodeID && !l.down {
				want[node] = l.epoch
			}
		}
		d.lmu.RUnlock()
		for node, o := range out {
			if want[node] != o.epoch || (o.fd >= 0 && peerClosed(o.fd)) {
				o.close(true)
				delete(out, node)
			}
		}
		for node, epoch := range want {
			if _, ok := out[node]; ok || unlinked[node] == epoch {
				continue
			}
			o, err := d.dialLink(node, epoch)
			if !errors.Is(err, nats.ErrNoResponders) {
				delete(noAnswer, node)
			}
			switch {
			case errors.Is(err, nats.ErrNoResponders):
				if noAnswer[node]++; noAnswer[node] >= linkAsks {
					unlinked[node] = epoch
					delete(noAnswer, node)
					d.log.Info("a node does not answer on its link subject (an older version, or links off): not linked", "node_id", node)
				}
			case err != nil:
				d.log.Debug("linking to a node failed; trying again", "node_id", node, "err", err)
			default:
				out[node] = o
			}
		}
		d.linksOut.Store(int64(len(out)))
		select {
		case <-t.C:
		case <-d.linkDial:
		case <-d.ctx.Done():
			return
		}
	}
}

// dialLink asks node for its link address and token, connects, sends this node's ident
// and moves the connection's descriptor above linkFDFloor.
func (d *Directory) dialLink(node uint16, epoch uint64) (linkOut, error) {
	ctx, cancel := context.WithTimeout(d.ctx, linkAskTimeout)
	m, err := d.nc.RequestWithContext(ctx, d.linkSubject(node), nil)
	cancel()
	if err != nil {
		return linkOut{}, err
	}
	if len(m.Data) <= 8 {
		return linkOut{}, fmt.Errorf("cluster: a link answer of %d bytes", len(m.Data))
	}
	dctx, dcancel := context.WithTimeout(d.ctx, linkDialTime)
	defer dcancel()
	c, err := (&net.Dialer{}).DialContext(dctx, "tcp", string(m.Data[8:]))
	if err != nil {
		return linkOut{}, err
	}
	ident := appendLinkIdent(make([]byte, 0, linkIdentLen), d.cfg.NodeID, d.epoch, m.Data[:8])
	_ = c.SetWriteDeadline(time.Now().Add(linkDialTime))
	if _, err := c.Write(ident); err != nil {
		_ = c.Close()
		return linkOut{}, err
	}
	fd, err := moveHigh(c)
	if err != nil {
		d.log.Debug("the link's descriptor stays where it is", "node_id", node, "err", err)
		return linkOut{epoch: epoch, fd: -1, conn: c}, nil
	}
	_ = c.Close() // the socket stays open through fd
	return linkOut{epoch: epoch, fd: fd}, nil
}

// closeHungLinks closes the links a stopped directory left open because hangLinks was set
// (tests).
func (d *Directory) closeHungLinks() {
	d.lnmu.Lock()
	defer d.lnmu.Unlock()
	for _, o := range d.hungLinks {
		o.close(false)
	}
	d.hungLinks = nil
}
