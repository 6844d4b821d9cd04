// Command sigstop measures a hung cluster node (issue 11): Go clients (package client,
// which reconnects and re-registers) hold names on one node, a prober on another node
// sends SEND+ACK to every name in sweeps, and the program stops the holders' node with
// SIGSTOP for a while, then wakes it with SIGCONT. It reports, from its own clock:
// when every holder had reconnected elsewhere, when every name was reachable again
// during the stop (takeover), and after SIGCONT when every name was reachable and every
// live node's admin /capacity said GREEN and /readyz 200. scripts/cluster-bench.sh's
// sigstop phase runs it; it is bounded by --timeout and stops nothing but what it
// started (and SIGCONTs the node it stopped, whatever happens).
//
// `switchboard bench failover --stop-pid PID --stop-for D` stops a node the same way
// under client traffic and accounts for every message and the directory afterwards; this
// program stays for what that does not do: names held only by idle clients (which ping,
// so they notice the stop), and the GREEN/ready check after SIGCONT.
//
//	go run ./bench/sigstop --addrs A1,A2,A3 --admins M1,M2,M3 --pid PID3 --stop-for 30s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/internal/procstat"
)

func main() {
	addrs := flag.String("addrs", "", "client addresses of nodes 1, 2, 3 (comma-separated); the holders start on the last")
	admins := flag.String("admins", "", "admin addresses of nodes 1, 2, 3 (comma-separated)")
	pid := flag.Int("pid", 0, "pid of the last node, which is stopped")
	names := flag.Int("names", 30, "holders, one name each")
	stopAfter := flag.Duration("stop-after", 3*time.Second, "stop the node this long after every name was reached")
	stopFor := flag.Duration("stop-for", 30*time.Second, "how long the node stays stopped")
	timeout := flag.Duration("timeout", 3*time.Minute, "bound on the whole run")
	flag.Parse()
	a, m := strings.Split(*addrs, ","), strings.Split(*admins, ",")
	if len(a) != 3 || len(m) != 3 || *pid <= 0 {
		fmt.Fprintln(os.Stderr, "need --addrs and --admins of three nodes and --pid")
		os.Exit(2)
	}
	if err := run(a, m, *pid, *names, *stopAfter, *stopFor, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "sigstop:", err)
		os.Exit(1)
	}
}

func logf(t0 time.Time, format string, args ...any) {
	fmt.Printf("%8.3f s  %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
}

type holder struct {
	c    *client.Client
	name string
	got  atomic.Value // string: the last payload received
}

func run(addrs, admins []string, pid, n int, stopAfter, stopFor, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	var lost atomic.Int64
	hs := make([]*holder, n)
	for i := range hs {
		h := &holder{name: fmt.Sprintf("sigstop-%d", i)}
		h.got.Store("")
		c, err := client.Dial(ctx, []string{addrs[2], addrs[0], addrs[1]}, client.Config{
			Name: h.name, HandshakeTimeout: time.Second, RequestTimeout: 3 * time.Second,
			OnMessage:     func(msg client.Message) { h.got.Store(string(msg.Payload)) },
			OnStateChange: func(s client.State) { lost.Add(b2i(s == client.NameLost)) },
		})
		if err != nil {
			return err
		}
		defer c.Close()
		h.c = c
		if err := c.Register(ctx, h.name); err != nil {
			return fmt.Errorf("register %s: %w", h.name, err)
		}
		hs[i] = h
	}
	prober, err := client.Dial(ctx, []string{addrs[0]}, client.Config{Name: "prober", RequestTimeout: time.Second})
	if err != nil {
		return err
	}
	defer prober.Close()

	// sweep sends one SEND+ACK to every name at once and reports how many were
	// acknowledged and received by their holder within a second.
	var seq atomic.Int64
	sweep := func() int {
		var wg sync.WaitGroup
		var ok atomic.Int64
		for _, h := range hs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := fmt.Sprintf("%s/%d", h.name, seq.Add(1))
				if prober.SendAck(ctx, h.name, []byte(p)) != nil {
					return
				}
				for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
					if h.got.Load().(string) == p {
						ok.Add(1)
						return
					}
				}
			}()
		}
		wg.Wait()
		return int(ok.Load())
	}
	for sweep() < n {
		if ctx.Err() != nil {
			return fmt.Errorf("names never all reachable before the stop")
		}
		time.Sleep(100 * time.Millisecond)
	}
	logf(t0, "%d names held on %s, all reached from %s", n, addrs[2], addrs[0])
	time.Sleep(stopAfter)

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return err
	}
	defer syscall.Kill(pid, syscall.SIGCONT) // never left stopped
	for !procstat.AllStopped(pid) {
		time.Sleep(time.Millisecond)
	}
	stopped := time.Now()
	logf(t0, "SIGSTOP pid %d (every thread stopped)", pid)
	var moved, back time.Duration
	wake := stopped.Add(stopFor)
	for time.Now().Before(wake) {
		if moved == 0 {
			all := true
			for _, h := range hs {
				if a := h.c.Addr(); a == "" || a == addrs[2] {
					all = false
				}
			}
			if all {
				moved = time.Since(stopped)
				logf(t0, "every holder reconnected to another node %.2f s after SIGSTOP", moved.Seconds())
			}
		}
		if back == 0 && sweep() == n {
			back = time.Since(stopped)
			logf(t0, "every name reachable again %.2f s after SIGSTOP (taken over while the node is stopped)", back.Seconds())
		}
		time.Sleep(min(200*time.Millisecond, time.Until(wake)))
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		return err
	}
	woke := time.Now()
	logf(t0, "SIGCONT after %.2f s stopped", woke.Sub(stopped).Seconds())

	// After SIGCONT: every name reachable (in one sweep), and every live node GREEN and
	// ready. The woken node fences itself and exits: it counts as live while its admin
	// answers.
	var reach, green time.Duration
	minReach, failed := n, 0
	for (reach == 0 || green == 0) && ctx.Err() == nil {
		r := sweep()
		if r < n {
			failed++
			minReach = min(minReach, r)
		} else if reach == 0 {
			reach = time.Since(woke)
			logf(t0, "every name reachable %.2f s after SIGCONT", reach.Seconds())
		}
		if green == 0 {
			if zones, ok := allGreen(admins); ok {
				green = time.Since(woke)
				logf(t0, "every live node GREEN and ready %.2f s after SIGCONT: %s", green.Seconds(), zones)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("not recovered within --timeout (names reachable after SIGCONT: %v, green: %v)", reach, green)
	}
	after := time.Since(woke)
	for time.Since(woke) < after+5*time.Second { // does it stay so?
		if r := sweep(); r < n {
			failed++
			minReach = min(minReach, r)
			logf(t0, "after recovery, a sweep reached %d of %d names", r, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	res := map[string]any{"names": n, "stop_s": woke.Sub(stopped).Seconds(), "moved_s": moved.Seconds(),
		"taken_over_s": back.Seconds(), "reach_after_cont_s": reach.Seconds(), "green_after_cont_s": green.Seconds(),
		"recovered_after_cont_s": max(reach, green).Seconds(), "names_lost": lost.Load()}
	b, _ := json.Marshal(res)
	fmt.Println("result", string(b))
	return nil
}

// allGreen reports whether every admin address that answers says zone GREEN on
// /capacity and 200 on /readyz; an address that does not answer (a node that exited) is
// skipped, but at least two must answer.
func allGreen(admins []string) (string, bool) {
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	defer hc.CloseIdleConnections()
	var parts []string
	answered := 0
	ok := true
	for _, m := range admins {
		resp, err := hc.Get("http://" + m + "/capacity")
		if err != nil {
			parts = append(parts, m+" down")
			continue
		}
		var c struct {
			Zone string `json:"zone"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&c)
		resp.Body.Close()
		r, err := hc.Get("http://" + m + "/readyz")
		code := 0
		if err == nil {
			code = r.StatusCode
			r.Body.Close()
		}
		answered++
		parts = append(parts, fmt.Sprintf("%s %s %d", m, c.Zone, code))
		ok = ok && c.Zone == "GREEN" && code == http.StatusOK
	}
	return strings.Join(parts, ", "), ok && answered >= 2
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
