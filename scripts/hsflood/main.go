// Command hsflood opens connections that never send HELLO and holds them, reconnecting
// each one the server closes, for the handshake-flood measurement in docs/BENCHMARKS.md:
//
//	go run ./scripts/hsflood --addr 127.0.0.1:7400 --conns 5000 --duration 10s
//
// Connections come from source addresses 127.0.0.2, 127.0.0.3, ... (--per-source each;
// --source sets the first one), so that they look like many peers and the per-address
// limits of the node do not see one. It prints how many connections it opened and how
// they ended.
//
// With --sink ADDR it is the other end instead, a control for that measurement: a bare
// listener with none of the node's work, that accepts every connection, holds it for
// --sink-hold (the node's handshake timeout), writes the node's HANDSHAKE_TIMEOUT ERROR
// and closes it; with --sink-hold 0 it never accepts, so that only the kernel sees the
// flood. What a flood against it costs its neighbours is the kernel's share (and, with a
// hold, that of accepting and closing), whatever a server does.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/codec"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7400", "server address")
	conns := flag.Int("conns", 5000, "silent connections held at once")
	perSource := flag.Int("per-source", 250, "connections per source address (--source upwards)")
	source := flag.String("source", "127.0.0.2", "first source address (IPv4); the next ones count up from it")
	duration := flag.Duration("duration", 10*time.Second, "how long to keep the flood up")
	sink := flag.String("sink", "", "listen here and be the flood's target instead (a control)")
	sinkHold := flag.Duration("sink-hold", 2*time.Second, "with --sink: how long each connection is held before the ERROR and close; 0: never accept")
	flag.Parse()
	if *sink != "" {
		if err := runSink(*sink, *sinkHold, *duration); err != nil {
			fmt.Fprintln(os.Stderr, "hsflood:", err)
			os.Exit(1)
		}
		return
	}
	if *conns <= 0 || *perSource <= 0 {
		fmt.Fprintln(os.Stderr, "hsflood: --conns and --per-source must be positive")
		os.Exit(2)
	}
	first, err := netip.ParseAddr(*source)
	if err != nil || !first.Is4() {
		fmt.Fprintln(os.Stderr, "hsflood: --source must be an IPv4 address")
		os.Exit(2)
	}
	base := binary.BigEndian.Uint32(first.AsSlice())
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var opened, busy, timedOut, other, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range *conns {
		var a4 [4]byte
		binary.BigEndian.PutUint32(a4[:], base+uint32(i / *perSource))
		src := netip.AddrFrom4(a4)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [512]byte
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", *addr)
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				opened.Add(1)
				stop := context.AfterFunc(ctx, func() { _ = c.Close() })
				// Never send anything: read whatever the server says until it closes.
				n, _ := io.ReadAtLeast(c, buf[:], 1)
				_, _ = io.Copy(io.Discard, c)
				stop()
				_ = c.Close()
				// The server's ERROR: a 10-byte header, then the code (u16).
				code := codec.ErrorCode(0)
				if n >= 12 && codec.Type(buf[4]) == codec.TypeError {
					code = codec.ErrorCode(binary.BigEndian.Uint16(buf[10:12]))
				}
				switch {
				case ctx.Err() != nil:
				case code == codec.CodeHandshakeTimeout:
					timedOut.Add(1)
				case code == codec.CodeBusy:
					busy.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("hsflood: %d connections opened: %d refused BUSY, %d closed HANDSHAKE_TIMEOUT, %d other; %d dials failed\n",
		opened.Load(), busy.Load(), timedOut.Load(), other.Load(), failed.Load())
}

// runSink listens on addr for d. With hold > 0 it accepts every connection, and closes each
// hold after its accept with the ERROR the node sends on a handshake timeout; with hold 0 it
// never accepts.
func runSink(addr string, hold, d time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("hsflood: sink listening on %s\n", ln.Addr())
	done := time.AfterFunc(d, func() { _ = ln.Close() })
	defer done.Stop()
	if hold <= 0 {
		time.Sleep(d)
		_ = ln.Close()
		fmt.Println("hsflood: sink accepted nothing")
		return nil
	}
	frame := codec.AppendError(nil, 0, codec.ErrorBody{Code: codec.CodeHandshakeTimeout, Reason: "no HELLO in time"})
	var accepted, closed atomic.Int64
	var mu sync.Mutex
	open := map[net.Conn]*time.Timer{}
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		accepted.Add(1)
		mu.Lock()
		open[c] = time.AfterFunc(hold, func() {
			_, _ = c.Write(frame)
			_ = c.Close()
			closed.Add(1)
			mu.Lock()
			delete(open, c)
			mu.Unlock()
		})
		mu.Unlock()
	}
	mu.Lock()
	for c, t := range open {
		t.Stop()
		_ = c.Close()
	}
	mu.Unlock()
	fmt.Printf("hsflood: sink accepted %d connections, closed %d after %v\n", accepted.Load(), closed.Load(), hold)
	return nil
}
