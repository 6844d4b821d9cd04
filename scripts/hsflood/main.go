// Command hsflood opens connections that never send HELLO and holds them, reconnecting
// each one the server closes, for the handshake-flood measurement in docs/BENCHMARKS.md:
//
//	go run ./scripts/hsflood --addr 127.0.0.1:7400 --conns 5000 --duration 10s
//
// Connections come from source addresses 127.0.0.2, 127.0.0.3, ... (--per-source each;
// --source sets the first one), so that they look like many peers and the per-address
// limits of the node do not see one. It prints how many connections it opened and how
// they ended.
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
	flag.Parse()
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
