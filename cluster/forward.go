package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/shard"
)

// Errors of Forwarder.Forward besides shard.ErrBusy. Compare with errors.Is.
var (
	// ErrNodeDown: the destination node holds no lease (it is not a live member).
	ErrNodeDown = errors.New("cluster: destination node is not live")
	// ErrTooLarge: the record does not fit in one NATS message.
	ErrTooLarge = errors.New("cluster: record larger than the NATS payload limit")
	// ErrForwarderClosed: the forwarder has stopped.
	ErrForwarderClosed = errors.New("cluster: forwarder closed")
)

// batchVersion starts every NATS message a Forwarder publishes.
const batchVersion = 1

// recPrefix is what precedes each record in a batch: u32 length | u64 epoch.
const recPrefix = 4 + 8

// Forwarder carries the server's cross-node records (opaque bytes, server.Remote) over
// NATS: one subject per node, subjectPrefix.<cluster-name>.node.<id>, to which that node
// subscribes. Records for one destination wait in a bounded queue (Config.ForwardQueue
// records and at most one NATS payload of bytes) that one goroutine per destination
// drains, publishing everything queued as one NATS message: a batch.
//
// A batch is: u8 version (1) | (u32 length | u64 epoch | record)*, where epoch is the
// destination's epoch as the sender's leases watch showed it when the record was queued.
// The destination drops records stamped with another epoch than its own: they were meant
// for an earlier run, whose connection ids the new run issues again. Records from one
// node to another arrive in the order Forward queued them.
//
// # Concurrency
//
// Forward is called on the server's event loops: it never blocks and never does I/O; it
// takes the destination's mutex for a copy into its buffer (the drainer holds it only to
// swap buffers). Inbound batches are handed, record by record, to the handler on the NATS
// subscription's goroutine, which must not block either (server.DeliverRemote does not).
type Forwarder struct {
	nc       *nats.Conn   // immutable
	log      *slog.Logger // immutable
	node     uint16       // immutable
	prefix   string       // immutable: subjectPrefix.<name>.node.
	maxQueue atomic.Int64 // records per destination (Config.ForwardQueue; tests lower it)
	maxBytes int          // immutable: bytes per destination queue, one NATS payload at most
	// epochOf is a node's current epoch, from the leases watch (false: no lease).
	epochOf func(node uint16) (uint64, bool)
	epoch   uint64 // immutable: this run's epoch; records stamped with another are stale

	// held stops the drainers from publishing (records stay queued): for tests that
	// fill a queue.
	held atomic.Bool

	handler atomic.Pointer[func(rec []byte)]
	sub     *nats.Subscription // set by start
	// extraMetrics writes the directory's metrics before the forwarder's (set by Start).
	extraMetrics func(io.Writer)

	mu     sync.RWMutex
	dests  map[uint16]*dest // guarded by mu
	closed bool             // guarded by mu

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the drainers

	published atomic.Uint64 // records published
	batches   atomic.Uint64 // NATS messages published
	full      atomic.Uint64 // records refused: queue full
	received  atomic.Uint64 // records received
	pubErrors atomic.Uint64 // batches NATS refused (their records are lost)
	stale     atomic.Uint64 // records received for another run of this node, dropped
}

// subjectPrefix begins every node subject.
const subjectPrefix = "switchboard"

// dest is the queue towards one node.
type dest struct {
	node    uint16
	subject string
	wake    chan struct{} // capacity 1: buf has records

	mu  sync.Mutex
	buf []byte // guarded by mu: batchVersion then the records queued
	n   int    // guarded by mu: records in buf

	spare []byte // owned by the drainer: the buffer last published, reused (recycle)
	// published counts the drainer's publishes; idleAt is its value at the last trim
	// (owned by the drainer).
	published, idleAt uint64
	// peak is the largest batch published in this fwdPeakWindow, prevPeak in the one
	// before (owned by the drainer; rotate).
	peak, prevPeak int
}

// A queue's two buffers grow to the largest batch it has carried, up to a NATS payload (8
// MiB embedded), and were kept for as long as the node runs: a burst of large messages
// towards five other nodes left up to 80 MiB behind. What the drainer keeps is what it
// has used lately: a buffer over fwdKeepCap more than four times the largest batch of the
// last one to two fwdPeakWindows is let go (recycle), so is one over fwdKeepCap after a
// window without a publish (rotate), and a queue that published nothing for fwdIdleTrim
// gives both up (trim).
//
// The window matters under a steady load of large messages: batches then vary from tens
// of KiB to a MiB from one publish to the next. Judged by the batch just published alone,
// a buffer grown by a large batch was let go after the next small one and grown again by
// the next large one, on the event loops that append to it: at 4 KiB messages across
// three nodes, ~4 KB allocated per record forwarded.
//
// No buffer over fwdKeepMax is kept: batches of several MiB (messages of 64 KiB and more,
// queued faster than NATS takes them) would keep up to four such buffers per destination
// live for as long as the load lasts, and the collector's goal twice that: a node of a
// 3-node cluster peaked 15–50 MiB higher at 64 KiB when they were kept (BENCHMARKS.md).
const (
	fwdKeepCap    = 256 << 10
	fwdKeepMax    = 2 << 20
	fwdPeakWindow = time.Second
	fwdIdleTrim   = 10 * time.Second
)

// recycle returns what the drainer keeps of batch, just published, for the next one,
// given recent, the largest batch published lately.
func recycle(batch []byte, recent int) []byte {
	if c := cap(batch); c > fwdKeepMax || c > fwdKeepCap && c > 4*recent {
		return nil
	}
	return batch[:0]
}

// rotate starts a new peak window. On the drainer, every fwdPeakWindow. A queue that
// published nothing in the window just ended lets go of its buffers over fwdKeepCap (the
// one in use only while it is empty): a load of large messages that stopped leaves
// nothing large behind after one or two windows.
func (d *dest) rotate() {
	if d.peak == 0 {
		if cap(d.spare) > fwdKeepCap {
			d.spare = nil
		}
		d.mu.Lock()
		if d.n == 0 && cap(d.buf) > fwdKeepCap {
			d.buf = nil
		}
		d.mu.Unlock()
	}
	d.prevPeak, d.peak = d.peak, 0
}

// trim gives up d's buffers if nothing was published since the last trim and nothing is
// queued. On the drainer.
func (d *dest) trim() {
	if d.published != d.idleAt {
		d.idleAt = d.published
		return
	}
	d.spare = nil
	d.mu.Lock()
	if d.n == 0 {
		d.buf = nil
	}
	d.mu.Unlock()
}

// ForwarderStats are a Forwarder's counters (also in the /cluster endpoint's JSON).
type ForwarderStats struct {
	Published     uint64 `json:"published"`
	Batches       uint64 `json:"batches"`
	QueueFull     uint64 `json:"queue_full"`
	Received      uint64 `json:"received"`
	PublishErrors uint64 `json:"publish_errors"`
	Stale         uint64 `json:"stale"`
}

func newForwarder(cfg Config, log *slog.Logger, nc *nats.Conn, epoch uint64, epochOf func(uint16) (uint64, bool)) *Forwarder {
	ctx, cancel := context.WithCancel(context.Background())
	maxBytes := int(nc.MaxPayload())
	f := &Forwarder{
		nc:       nc,
		log:      log,
		node:     cfg.NodeID,
		prefix:   subjectPrefix + "." + cfg.Name + ".node.",
		maxBytes: maxBytes,
		epochOf:  epochOf,
		epoch:    epoch,
		dests:    make(map[uint16]*dest),
		ctx:      ctx,
		cancel:   cancel,
	}
	f.maxQueue.Store(int64(cfg.ForwardQueue))
	return f
}

// nodeEpoch is node's epoch as its lease shows it (false: it holds no lease, or probes
// found it dead, probe.go): a hint, enough to refuse forwarding to nodes that are gone.
func (d *Directory) nodeEpoch(node uint16) (uint64, bool) {
	d.lmu.RLock()
	l, ok := d.liveNodes[node]
	d.lmu.RUnlock()
	return l.epoch, ok && !l.down
}

// subject is node's subject.
func (f *Forwarder) subject(node uint16) string { return f.prefix + strconv.Itoa(int(node)) }

// start subscribes to this node's subject.
func (f *Forwarder) start() error {
	sub, err := f.nc.Subscribe(f.subject(f.node), f.onBatch)
	if err != nil {
		return fmt.Errorf("cluster: subscribe %s: %w", f.subject(f.node), err)
	}
	f.sub = sub
	return nil
}

// SetHandler sets the function that receives every record sent to this node
// (server.Server.DeliverRemote). Until it is set, records are dropped. fn is called on
// one goroutine at a time and must not block or keep rec.
func (f *Forwarder) SetHandler(fn func(rec []byte)) { f.handler.Store(&fn) }

// MaxRecord implements server.Remote: the largest record one NATS message carries.
func (f *Forwarder) MaxRecord() int { return f.maxBytes - 1 - recPrefix }

// Forward implements server.Remote: it queues a copy of rec for node and returns at once.
// It fails with shard.ErrBusy when node's queue holds Config.ForwardQueue records or a NATS
// payload of bytes, ErrNodeDown when node holds no lease, ErrTooLarge, or
// ErrForwarderClosed. Safe for concurrent use; it does not allocate once node's queue has
// grown to its size.
func (f *Forwarder) Forward(node uint16, rec []byte) error {
	if len(rec) > f.MaxRecord() {
		return ErrTooLarge
	}
	epoch, live := f.epochOf(node)
	if node == f.node || !live {
		return ErrNodeDown
	}
	d, err := f.dest(node)
	if err != nil {
		return err
	}
	if !d.add(rec, epoch, int(f.maxQueue.Load()), f.maxBytes) {
		f.full.Add(1)
		return shard.ErrBusy
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return nil
}

// add queues rec, stamped with epoch, unless d holds maxN records or rec would take its
// batch past maxBytes.
func (d *dest) add(rec []byte, epoch uint64, maxN, maxBytes int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n >= maxN || len(d.buf)+recPrefix+len(rec) > maxBytes {
		return false
	}
	if len(d.buf) == 0 {
		d.buf = append(d.buf, batchVersion)
	}
	d.buf = binary.BigEndian.AppendUint32(d.buf, uint32(len(rec)))
	d.buf = binary.BigEndian.AppendUint64(d.buf, epoch)
	d.buf = append(d.buf, rec...)
	d.n++
	return true
}

// take empties d's queue and returns the batch and its record count; the batch is the
// drainer's until it hands it back (done). On the drainer.
func (d *dest) take() (batch []byte, n int) {
	d.mu.Lock()
	batch, n = d.buf, d.n
	d.buf, d.n = d.spare[:0], 0
	d.mu.Unlock()
	return batch, n
}

// done takes back a batch that take returned, once published: it is the next batch's
// buffer unless recycle lets it go. On the drainer.
func (d *dest) done(batch []byte) {
	d.peak = max(d.peak, len(batch))
	d.spare = recycle(batch, max(d.peak, d.prevPeak))
}

// dest returns node's queue, creating it and its drainer on first use.
func (f *Forwarder) dest(node uint16) (*dest, error) {
	f.mu.RLock()
	d, closed := f.dests[node], f.closed
	f.mu.RUnlock()
	if d != nil {
		return d, nil
	}
	if closed {
		return nil, ErrForwarderClosed
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrForwarderClosed
	}
	if d = f.dests[node]; d == nil {
		d = &dest{node: node, subject: f.subject(node), wake: make(chan struct{}, 1)}
		f.dests[node] = d
		f.wg.Add(1)
		go f.drain(d)
	}
	return d, nil
}

// drain publishes d's records, everything queued since the last publish as one NATS
// message, until the forwarder closes; then it publishes what is left once.
func (f *Forwarder) drain(d *dest) {
	defer f.wg.Done()
	tick := time.NewTicker(fwdPeakWindow)
	defer tick.Stop()
	for ticks := 1; ; {
		select {
		case <-d.wake:
			if !f.held.Load() {
				f.publish(d)
			}
		case <-tick.C:
			d.rotate()
			if ticks++; ticks%int(fwdIdleTrim/fwdPeakWindow) == 0 {
				d.trim()
			}
		case <-f.ctx.Done():
			if !f.held.Load() {
				f.publish(d)
			}
			return
		}
	}
}

func (f *Forwarder) publish(d *dest) {
	batch, n := d.take()
	defer d.done(batch)
	if n == 0 {
		return
	}
	d.published++
	// Publish copies the batch into the connection's buffer (it may block while that
	// buffer is full: here, never on an event loop), so the batch can be reused after.
	if err := f.nc.Publish(d.subject, batch); err != nil {
		f.pubErrors.Add(1)
		f.log.Warn("publishing to a node failed; its records are lost", "node", d.node, "records", n, "err", err)
		return
	}
	f.published.Add(uint64(n))
	f.batches.Add(1)
}

// hold stops (true) or resumes (false) publishing; on resume every queue is published.
// For tests.
func (f *Forwarder) hold(on bool) {
	f.held.Store(on)
	if on {
		return
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, d := range f.dests {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// onBatch hands the records of one inbound batch to the handler, in order.
func (f *Forwarder) onBatch(m *nats.Msg) {
	b := m.Data
	if len(b) == 0 || b[0] != batchVersion {
		f.log.Warn("dropping a batch of an unknown version", "subject", m.Subject, "bytes", len(b))
		return
	}
	h := f.handler.Load()
	b = b[1:]
	for len(b) >= recPrefix {
		n := int(binary.BigEndian.Uint32(b))
		if n > len(b)-recPrefix {
			break
		}
		rec := b[recPrefix : recPrefix+n]
		switch {
		case binary.BigEndian.Uint64(b[4:]) != f.epoch:
			// Meant for an earlier run of this node: its connection ids may name other
			// connections now. Dropped; what waits for it on the sender's node times out.
			f.stale.Add(1)
		case h != nil:
			f.received.Add(1)
			(*h)(rec)
		}
		b = b[recPrefix+n:]
	}
	if len(b) != 0 {
		f.log.Warn("dropping the truncated end of a batch", "subject", m.Subject, "bytes", len(b))
	}
}

// Stats returns the forwarder's counters. Safe for concurrent use.
func (f *Forwarder) Stats() ForwarderStats {
	return ForwarderStats{
		Published: f.published.Load(), Batches: f.batches.Load(), QueueFull: f.full.Load(),
		Received: f.received.Load(), PublishErrors: f.pubErrors.Load(), Stale: f.stale.Load(),
	}
}

// WritePrometheus writes the forwarder's counters in the Prometheus text format
// (server.RemoteMetrics: the server's /metrics includes them). Safe for concurrent use.
func (f *Forwarder) WritePrometheus(w io.Writer) {
	if fn := f.extraMetrics; fn != nil {
		fn(w)
	}
	st := f.Stats()
	writeFamily(w, "switchboard_cluster_forwarded_total", "counter", "Records published to other nodes.", st.Published)
	writeFamily(w, "switchboard_cluster_forward_batches_total", "counter", "NATS messages published to other nodes (each a batch of records).", st.Batches)
	writeFamily(w, "switchboard_cluster_forward_queue_full_total", "counter", "Records refused because the queue towards their node was full (cluster-forward-queue).", st.QueueFull)
	writeFamily(w, "switchboard_cluster_forward_publish_errors_total", "counter", "Batches NATS refused to publish; their records were lost.", st.PublishErrors)
	writeFamily(w, "switchboard_cluster_forward_queued", "gauge", "Records waiting to be published, all destinations.", uint64(f.queued()))
	writeFamily(w, "switchboard_cluster_received_total", "counter", "Records received from other nodes.", st.Received)
	writeFamily(w, "switchboard_cluster_received_stale_total", "counter", "Records received for an earlier run of this node, dropped.", st.Stale)
}

// queued is the number of records waiting in the queues.
func (f *Forwarder) queued() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := 0
	for _, d := range f.dests {
		d.mu.Lock()
		n += d.n
		d.mu.Unlock()
	}
	return n
}

// flushTimeout bounds the wait, at Close, for NATS to take the last batches.
const flushTimeout = 2 * time.Second

// close stops receiving, publishes what is queued and stops the drainers; with flush,
// it waits (up to flushTimeout) until the NATS server has the batches. Call it before
// the NATS connection closes.
func (f *Forwarder) close(flush bool) {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	if f.sub != nil {
		_ = f.sub.Unsubscribe()
	}
	f.cancel()
	f.wg.Wait()
	if flush {
		_ = f.nc.FlushTimeout(flushTimeout)
	}
}

// embeddedMaxPayload is the embedded nats-server's max_payload, which bounds one batch and
// so one queue of Forwarder (nats-server warns above 8 MiB).
const embeddedMaxPayload = 8 << 20
