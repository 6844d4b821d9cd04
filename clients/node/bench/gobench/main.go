// Command gobench is the Go side of the client benchmark in clients/node/bench (run.sh):
// an echo responder, and a load generator that keeps N requests in flight through the Go
// client for a duration, like bench.mjs does with the TypeScript client.
//
//	gobench responder --addr ADDR --name echo        prints "ready", runs until stdin closes
//	gobench load --addr ADDR --name echo --concurrency 64 --duration 10s --size 64
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/client"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gobench responder|load [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:7400", "server address")
	name := fs.String("name", "echo", "responder name")
	conc := fs.Int("concurrency", 64, "requests in flight (load)")
	dur := fs.Duration("duration", 10*time.Second, "load duration")
	size := fs.Int("size", 64, "payload bytes (load)")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "responder":
		err = responder(*addr, *name)
	case "load":
		err = load(*addr, *name, *conc, *dur, *size)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gobench:", err)
		os.Exit(1)
	}
}

func responder(addr, name string) error {
	ctx := context.Background()
	c, err := client.Dial(ctx, []string{addr}, client.Config{
		Name:      "bench-echo",
		OnRequest: func(r *client.Request) { _ = r.Reply(r.Payload) },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Register(ctx, name); err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

func load(addr, name string, conc int, dur time.Duration, size int) error {
	ctx := context.Background()
	c, err := client.Dial(ctx, []string{addr}, client.Config{Name: "bench-go"})
	if err != nil {
		return err
	}
	defer c.Close()
	payload := make([]byte, size)
	var done, failed atomic.Int64
	stop := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := c.Request(ctx, name, payload); err != nil {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"client": "go", "concurrency": conc, "size": size, "requests": done.Load(), "errors": failed.Load(),
		"seconds": secs, "requests_per_second": float64(done.Load()) / secs,
	})
}
