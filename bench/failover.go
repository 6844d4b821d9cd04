package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/internal/cliflag"
)

// ScenarioFailover is the failover scenario. It has its own configuration
// (FailoverConfig): it drives Go clients (package client, which reconnect and register
// their names again), not raw connections, and kills or stops a node of a cluster.
const ScenarioFailover = "failover"

const failoverAbout = "Go clients (package client: reconnect, register again), one name each, spread over\n" +
	"the nodes of a cluster, send open-loop SEND+ACK and/or REQUEST to each other; one node\n" +
	"is killed (--kill-pid: SIGKILL) or stopped (--stop-pid: SIGSTOP, SIGCONT after\n" +
	"--stop-for) at --kill-at. Reports the victim's clients' reconnect times, the time until\n" +
	"each of the victim's names is reachable again, the accounting of every message (sent =\n" +
	"OK + refused by code + no outcome; acknowledged but never delivered; duplicates) and a\n" +
	"scan of every surviving node's /cluster/names. Exit 1 on a lost or duplicate message,\n" +
	"a request with two outcomes or a name with two owners."

// FailoverConfig is one `switchboard bench failover` run. Zero fields get their defaults
// from EnsureDefaults; durations are time.Duration, the rate per second over all clients.
type FailoverConfig struct {
	// Addrs are the client addresses of the cluster's nodes (at least 2).
	Addrs []string `json:"addr"`
	// Admins are the nodes' admin addresses, in the order of Addrs (for /cluster/names).
	Admins []string `json:"admin"`
	// Clients is the number of Go clients, each registering one name; client i starts on
	// Addrs[i mod len(Addrs)]. Default 30.
	Clients int `json:"clients"`
	// Rate is the open-loop message rate over all clients, messages/s. Default 500.
	Rate float64 `json:"rate"`
	// Mode is "send" (SEND+ACK), "request" (REQUEST/REPLY) or "mix" (half each). Default mix.
	Mode string `json:"mode"`
	// KillPID is the victim node's process, killed with SIGKILL at KillAt; or StopPID,
	// stopped with SIGSTOP at KillAt and continued (SIGCONT) StopFor later. One of the two.
	KillPID int           `json:"kill_pid"`
	StopPID int           `json:"stop_pid"`
	StopFor time.Duration `json:"stop_for"`
	// VictimIndex is the index in Addrs of the victim's address. Default: the last.
	VictimIndex int `json:"victim_index"`
	// KillAt is when the victim is killed or stopped, after the traffic started. Default 5s.
	KillAt time.Duration `json:"kill_at"`
	// Duration is how long the traffic runs, from its start. Default 20s (stop: KillAt +
	// StopFor + 10s).
	Duration time.Duration `json:"duration"`
	// Grace bounds the wait for acknowledged messages to arrive after the traffic ends.
	// Default 5s.
	Grace time.Duration `json:"grace"`
	// RequestTimeout is every call's bound (client.Config.RequestTimeout). Default 2s.
	RequestTimeout time.Duration `json:"request_timeout"`
	// ScanTimeout bounds the directory scan's polling until the views agree. Default 20s.
	ScanTimeout time.Duration `json:"scan_timeout"`
	// Timeout bounds the whole run. Default: Duration + Grace + ScanTimeout + 60s.
	Timeout time.Duration `json:"timeout"`
	// Size is the payload size in bytes, at least 13 (id, sender, kind). Default 32.
	Size int `json:"size"`
	// Token is the HELLO token.
	Token string `json:"-"`
	// JSON is where the JSON result goes ("-": stdout; "": nowhere).
	JSON string `json:"json"`
	// AllowRemote permits non-loopback addresses.
	AllowRemote bool `json:"allow_remote"`
}

// EnsureDefaults fills zero fields with their defaults.
func (c *FailoverConfig) EnsureDefaults() {
	if c.Clients == 0 {
		c.Clients = 30
	}
	if c.Rate == 0 {
		c.Rate = 500
	}
	if c.Mode == "" {
		c.Mode = "mix"
	}
	if c.VictimIndex < 0 {
		c.VictimIndex = len(c.Addrs) - 1
	}
	if c.KillAt == 0 {
		c.KillAt = 5 * time.Second
	}
	if c.Duration == 0 {
		c.Duration = 20 * time.Second
		if c.StopPID > 0 {
			c.Duration = max(c.Duration, c.KillAt+c.StopFor+10*time.Second)
		}
	}
	if c.Grace == 0 {
		c.Grace = 5 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 2 * time.Second
	}
	if c.ScanTimeout == 0 {
		c.ScanTimeout = 20 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = c.Duration + c.Grace + c.ScanTimeout + time.Minute
	}
	if c.Size == 0 {
		c.Size = 32
	}
}

// Validate returns every problem in c, each naming its flag.
func (c *FailoverConfig) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("bench failover: --%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	checkAddrs := func(flag string, addrs []string) {
		for _, a := range addrs {
			host, _, err := net.SplitHostPort(a)
			switch {
			case err != nil:
				bad(flag, "%v", err)
			case !c.AllowRemote && !isLoopback(host):
				bad(flag, "%s is not a loopback address (add --allow-remote)", a)
			}
		}
	}
	if len(c.Addrs) < 2 {
		bad("addr", "need the client addresses of at least two nodes, got %d", len(c.Addrs))
	}
	checkAddrs("addr", c.Addrs)
	if len(c.Admins) != len(c.Addrs) {
		bad("admin", "need one admin address per --addr, in the same order: got %d for %d", len(c.Admins), len(c.Addrs))
	}
	checkAddrs("admin", c.Admins)
	if c.VictimIndex < 0 || c.VictimIndex >= len(c.Addrs) {
		bad("victim-index", "must be an index into --addr (0..%d), got %d", len(c.Addrs)-1, c.VictimIndex)
	}
	switch {
	case (c.KillPID > 0) == (c.StopPID > 0):
		bad("kill-pid", "give exactly one of --kill-pid and --stop-pid")
	case c.StopPID > 0 && c.StopFor <= 0:
		bad("stop-for", "--stop-pid needs a positive --stop-for")
	case c.KillPID > 0 && c.StopFor != 0:
		bad("stop-for", "only with --stop-pid")
	}
	for _, p := range []struct {
		flag string
		pid  int
	}{{"kill-pid", c.KillPID}, {"stop-pid", c.StopPID}} {
		switch {
		case p.pid < 0 || p.pid == 1:
			bad(p.flag, "not a node's pid: %d", p.pid)
		case p.pid > 0 && p.pid == os.Getpid():
			bad(p.flag, "is this process")
		case p.pid > 0 && !pidAlive(p.pid):
			bad(p.flag, "no process %d that this user may signal", p.pid)
		}
	}
	if c.Clients < 2 || c.Clients > 100_000 {
		bad("clients", "must be 2..100000, got %d", c.Clients)
	}
	if c.Rate <= 0 || c.Rate > 1_000_000 {
		bad("rate", "must be in (0, 1000000], got %v", c.Rate)
	}
	if c.Mode != "send" && c.Mode != "request" && c.Mode != "mix" {
		bad("mode", `must be "send", "request" or "mix", got %q`, c.Mode)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"kill-at", c.KillAt}, {"duration", c.Duration}, {"grace", c.Grace}, {"request-timeout", c.RequestTimeout},
		{"scan-timeout", c.ScanTimeout}, {"timeout", c.Timeout}} {
		if d.v <= 0 || d.v > maxDuration {
			bad(d.flag, "must be positive and at most %v, got %v", maxDuration, d.v)
		}
	}
	if c.KillAt >= c.Duration {
		bad("kill-at", "must come before the end of --duration (%v), got %v", c.Duration, c.KillAt)
	}
	if c.StopPID > 0 && c.KillAt+c.StopFor >= c.Duration {
		bad("stop-for", "the traffic must outlast the stop: --kill-at + --stop-for (%v) >= --duration (%v)",
			c.KillAt+c.StopFor, c.Duration)
	}
	if c.Size < failoverPayloadMin || c.Size > maxSize {
		bad("size", "must be %d..%d bytes, got %d", failoverPayloadMin, maxSize, c.Size)
	}
	if recs := c.Rate * c.Duration.Seconds(); recs > 50_000_000 {
		bad("rate", "--rate × --duration is %.0f messages; at most 50,000,000 are tracked", recs)
	}
	return errors.Join(errs...)
}

// failoverFlags binds c's fields to the scenario's flags.
func (c *FailoverConfig) flags() (fs *cliflag.Set, addrs, admins *string) {
	cmd := "switchboard bench " + ScenarioFailover
	fs = cliflag.New(cmd, cmd+" --addr A1,A2,A3 --admin M1,M2,M3 (--kill-pid PID | --stop-pid PID --stop-for D) [flags]",
		failoverAbout+"\nTargets must be loopback addresses unless --allow-remote is given.")
	addrs = fs.String("addr", "", "client addresses of the nodes, comma-separated")
	admins = fs.String("admin", "", "admin addresses of the same nodes, same order (for /cluster/names)")
	fs.StringVar(&c.Token, "token", "", "HELLO token")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow non-loopback addresses")
	fs.IntVar(&c.VictimIndex, "victim-index", -1, "index in --addr of the victim node (default: the last)")
	fs.IntVar(&c.KillPID, "kill-pid", 0, "the victim node's pid: SIGKILL at --kill-at")
	fs.IntVar(&c.StopPID, "stop-pid", 0, "the victim node's pid: SIGSTOP at --kill-at, SIGCONT --stop-for later")
	fs.DurationVar(&c.StopFor, "stop-for", 0, "how long the victim stays stopped")
	fs.DurationVar(&c.KillAt, "kill-at", 5*time.Second, "when the victim is killed or stopped, after the traffic starts")
	fs.IntVar(&c.Clients, "clients", 30, "Go clients, one name each, spread round-robin over the nodes")
	fs.Float64Var(&c.Rate, "rate", 500, "open-loop messages/s over all clients, to random other clients' names")
	fs.StringVar(&c.Mode, "mode", "mix", `"send" (SEND+ACK), "request" (REQUEST/REPLY) or "mix" (half each)`)
	fs.DurationVar(&c.Duration, "duration", 0, "how long the traffic runs (default 20s; with --stop-pid at least kill-at+stop-for+10s)")
	fs.IntVar(&c.Size, "size", 32, "payload bytes, at least 13")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 2*time.Second, "bound on every call")
	fs.DurationVar(&c.Grace, "grace", 5*time.Second, "wait for acknowledged messages to arrive after the traffic ends")
	fs.DurationVar(&c.ScanTimeout, "scan-timeout", 20*time.Second, "poll the nodes' /cluster/names until they agree, at most this long")
	fs.DurationVar(&c.Timeout, "timeout", 0, "bound on the whole run (default duration+grace+scan-timeout+1m)")
	fs.StringVar(&c.JSON, "json", "", "write the JSON result to `FILE` (- for stdout)")
	fs.Section("Target", "addr", "admin", "token", "allow-remote")
	fs.Section("Victim", "victim-index", "kill-pid", "stop-pid", "stop-for", "kill-at")
	fs.Section("Load", "clients", "rate", "mode", "duration", "size", "request-timeout", "grace")
	fs.Section("Check", "scan-timeout", "timeout")
	fs.Section("Output", "json")
	fs.VisitAll(func(f *flag.Flag) {
		switch f.DefValue {
		case "0", "0s", "-1": // none, or computed (the usage says how)
			f.DefValue = ""
		}
	})
	return fs, addrs, admins
}

// failoverMain implements `switchboard bench failover ARGS...`.
func failoverMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg FailoverConfig
	fs, addrs, admins := cfg.flags()
	if code, done := fs.Parse(args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Fail(stderr, "unexpected arguments: "+strings.Join(fs.Args(), " "))
		return 2
	}
	cfg.Addrs, cfg.Admins = splitList(*addrs), splitList(*admins)
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintln(stderr, "see 'switchboard bench failover --help'")
		return 2
	}
	res, err := RunFailover(ctx, cfg, stderr)
	summary := stdout
	if cfg.JSON == "-" {
		summary = stderr
	}
	res.WriteText(summary)
	status := 0
	if err != nil {
		fmt.Fprintf(stderr, "bench failover: run failed: %v\n", err)
		status = 1
	}
	if len(res.Violations) > 0 {
		status = 1
	}
	if cfg.JSON != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err == nil {
			b = append(b, '\n')
			if cfg.JSON == "-" {
				_, err = stdout.Write(b)
			} else {
				err = os.WriteFile(cfg.JSON, b, 0o644)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "bench failover: --json: %v\n", err)
			status = 1
		}
	}
	return status
}

func splitList(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// FailoverResult is the report of a failover run (text: WriteText; JSON: its fields).
type FailoverResult struct {
	Config    FailoverConfig `json:"config"`
	StartedAt time.Time      `json:"started_at"`
	Action    string         `json:"action"` // "kill" or "stop"
	VictimPID int            `json:"victim_pid"`
	Victim    string         `json:"victim_addr"`
	// KilledAtS is when the signal was sent, seconds after the traffic started;
	// ContinuedAtS when SIGCONT was (stop only).
	KilledAtS    float64 `json:"killed_at_s"`
	ContinuedAtS float64 `json:"continued_at_s,omitempty"`
	// VictimClients were connected to the victim when it was signalled; VictimNames are
	// theirs.
	VictimClients int `json:"victim_clients"`
	// Reconnect: from the signal until each victim client was connected to another node
	// (client state Connected: its first round of REGISTERs answered, whether or not the
	// node could decide them yet; Reach says when its name worked); Missing never did.
	Reconnect Durations `json:"reconnect"`
	// Reach: from the signal until the first delivery to each victim name of a message sent
	// after the signal (measured by the traffic itself: each name receives about
	// rate/clients messages per second); Missing never got one.
	Reach       Durations `json:"reach"`
	ReachMethod string    `json:"reach_method"`
	// NamesLost counts client NameLost events: a name not registered again after a
	// reconnect because another connection held it.
	NamesLost int            `json:"names_lost"`
	Send      SendAccount    `json:"send"`
	Request   RequestAccount `json:"request"`
	// Skipped messages were not sent: 8192 calls were in flight already.
	Skipped int `json:"skipped"`
	// Foreign frames arrived whose payload is no message of this run.
	Foreign    int        `json:"foreign"`
	Scan       ScanResult `json:"scan"`
	Violations []string   `json:"violations"`
	Error      string     `json:"error,omitempty"`
}

// WriteText writes the human-readable report.
func (r *FailoverResult) WriteText(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "failover: %s of node %s (pid %d) at %.2f s", r.Action, r.Victim, r.VictimPID, r.KilledAtS)
	if r.Action == "stop" {
		fmt.Fprintf(w, ", SIGCONT at %.2f s", r.ContinuedAtS)
	}
	fmt.Fprintf(w, "; %d clients over %d nodes, %s at %.0f msg/s for %v\n", c.Clients, len(c.Addrs), c.Mode, c.Rate, c.Duration)
	d := func(name string, x Durations, unit string) {
		fmt.Fprintf(w, "  %-22s n=%d  p50 %.1f ms  p99 %.1f ms  max %.1f ms  %s %d\n", name, x.N, x.P50Ms, x.P99Ms, x.MaxMs, unit, x.Missed)
	}
	fmt.Fprintf(w, "  victim's clients       %d (names lost on re-register: %d)\n", r.VictimClients, r.NamesLost)
	d("reconnect", r.Reconnect, "never reconnected")
	d("names reachable again", r.Reach, "never reachable")
	fmt.Fprintf(w, "  (%s)\n", r.ReachMethod)
	s := r.Send
	if s.Sent > 0 {
		fmt.Fprintf(w, "  SEND+ACK  sent %d = ok %d + refused %d %s + no outcome %d %s\n", s.Sent, s.OK, sumCounts(s.Refused),
			fmtCounts(s.Refused), sumCounts(s.NoOutcome), fmtCounts(s.NoOutcome))
		fmt.Fprintf(w, "            delivered %d, duplicates %d, ACKED BUT NEVER DELIVERED %d, delivered without OK %d (of which refused %d), misrouted %d\n",
			s.Delivered, s.Duplicates, s.AckedNotDelivered, s.DeliveredWithoutOK, s.RefusedButDelivered, s.Misrouted)
	}
	q := r.Request
	if q.Sent > 0 {
		fmt.Fprintf(w, "  REQUEST   sent %d = answered %d + refused %d %s + no outcome %d %s + wrong answer %d\n", q.Sent, q.Answered,
			sumCounts(q.Refused), fmtCounts(q.Refused), sumCounts(q.NoOutcome), fmtCounts(q.NoOutcome), q.WrongAnswer)
		fmt.Fprintf(w, "            reached the responder %d, duplicates %d, two outcomes %d, misrouted %d\n",
			q.Delivered, q.Duplicates, q.TwoOutcomes, q.Misrouted)
	}
	if r.Skipped > 0 || r.Foreign > 0 {
		fmt.Fprintf(w, "  skipped (in-flight bound) %d, foreign frames %d\n", r.Skipped, r.Foreign)
	}
	sc := r.Scan
	fmt.Fprintf(w, "  directory scan: nodes %v, %d names, %d rounds, consistent %v: two owners %d, cache disagrees %d, dangling %d, client not local %d\n",
		sc.Nodes, sc.Names, sc.Rounds, sc.Consistent, sc.TwoOwners, sc.CacheDisagrees, sc.Dangling, sc.ClientNotLocal)
	if sc.Error != "" {
		fmt.Fprintf(w, "    scan error: %s\n", sc.Error)
	}
	for _, e := range sc.Examples {
		fmt.Fprintf(w, "    %s\n", e)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
	if len(r.Violations) == 0 {
		fmt.Fprintln(w, "  verdict: PASS (no lost, duplicate or two-outcome message, no name with two owners)")
		return
	}
	fmt.Fprintf(w, "  verdict: FAIL: %s\n", strings.Join(r.Violations, "; "))
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// violations lists what makes the run fail.
func (r *FailoverResult) violations() []string {
	var v []string
	add := func(n int, what string) {
		if n > 0 {
			v = append(v, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Send.AckedNotDelivered, "SEND+ACK acknowledged but never delivered")
	add(r.Send.Duplicates, "duplicate SEND deliveries")
	add(r.Request.Duplicates, "duplicate REQUEST deliveries")
	add(r.Send.TwoOutcomes+r.Request.TwoOutcomes, "calls with two outcomes")
	add(r.Request.WrongAnswer, "REQUESTs answered with another request's reply")
	add(r.Send.Misrouted+r.Request.Misrouted, "messages delivered to the wrong client")
	add(r.Scan.TwoOwners, "names with two owners")
	return v
}

// foClient is one Go client of the run and the name it holds.
type foClient struct {
	name        string
	c           *client.Client // set before the traffic starts
	victim      atomic.Bool    // connected to the victim when it was signalled
	reconnectNs atomic.Int64   // since t0: connected elsewhere after the signal; 0: not yet
	reachNs     atomic.Int64   // since t0: first delivery of a message sent after the signal
}

// failoverRun is one run's shared state.
type failoverRun struct {
	cfg     FailoverConfig // immutable
	log     io.Writer      // safe for concurrent use
	t0      time.Time      // immutable: the run's origin; every *Ns is ns since t0
	startNs int64          // when the traffic started; written before the pacer starts
	recs    []msgRec       // indexed by message id; a record is written before its message is sent
	clients []*foClient    // immutable once dialled
	killNs  atomic.Int64   // when the victim was signalled; 0 before
	sent    atomic.Int64   // records used, set by the pacer as it returns
	foreign atomic.Int64
	skipped atomic.Int64
	lost    atomic.Int64 // NameLost events
}

func (r *failoverRun) since() int64 { return int64(time.Since(r.t0)) }

func (r *failoverRun) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "%8.3f s  %s\n", time.Since(r.t0).Seconds(), fmt.Sprintf(format, args...))
}

// deliver counts a MESSAGE or INCOMING payload that arrived at client to.
func (r *failoverRun) deliver(to int, p []byte) {
	id, _, _, ok := parseFailoverPayload(p)
	if !ok || id >= uint64(len(r.recs)) {
		r.foreign.Add(1)
		return
	}
	rec := &r.recs[id]
	if rec.to.Load() != int32(to) {
		rec.misrouted.Add(1)
	}
	rec.deliveries.Add(1)
	if k := r.killNs.Load(); k != 0 && rec.sentNs.Load() >= k {
		r.clients[to].reachNs.CompareAndSwap(0, r.since())
	}
}

// RunFailover runs the scenario; progress lines go to log. The result is complete as far
// as the run got, also with an error.
func RunFailover(ctx context.Context, cfg FailoverConfig, log io.Writer) (*FailoverResult, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := &FailoverResult{Config: cfg, StartedAt: time.Now().UTC(), Victim: cfg.Addrs[cfg.VictimIndex],
		Action: "kill", VictimPID: cfg.KillPID,
		ReachMethod: fmt.Sprintf("reachable: first delivery of a message sent after the signal, seen by the traffic; "+
			"each name receives ~%.3g msgs/s, so the resolution is ~%.0f ms", cfg.Rate/float64(cfg.Clients),
			1000*float64(cfg.Clients)/cfg.Rate)}
	if cfg.StopPID > 0 {
		res.Action, res.VictimPID = "stop", cfg.StopPID
	}
	capacity := int(cfg.Rate*cfg.Duration.Seconds()) + 1024
	r := &failoverRun{cfg: cfg, log: &lockedWriter{w: log}, t0: time.Now(), recs: make([]msgRec, capacity)}
	err := r.run(ctx, res)
	if err != nil {
		res.Error = err.Error()
		// Every call has returned on every path out of run.
		res.Send, res.Request = tally(r.recs[:r.sent.Load()])
	}
	res.Violations = res.violations()
	return res, err
}

func (r *failoverRun) run(ctx context.Context, res *FailoverResult) error {
	cfg := r.cfg
	defer r.closeClients()
	if err := r.dial(ctx); err != nil {
		return err
	}
	r.logf("%d clients connected and registered over %d nodes; traffic starts", len(r.clients), len(cfg.Addrs))
	r.startNs = r.since()

	callCtx, stopCalls := context.WithCancel(ctx) // calls outlive the pacer, not the run
	defer stopCalls()
	var calls sync.WaitGroup
	paced := make(chan struct{})
	go func() {
		defer close(paced)
		r.pace(callCtx, &calls)
	}()

	if !sleepCtx(ctx, cfg.KillAt) {
		<-paced
		calls.Wait()
		return ctx.Err()
	}
	victimAddr := cfg.Addrs[cfg.VictimIndex]
	for _, c := range r.clients {
		if c.c.Addr() == victimAddr {
			c.victim.Store(true)
			res.VictimClients++
		}
	}
	pid, sig := cfg.KillPID, sigKill
	if cfg.StopPID > 0 {
		pid, sig = cfg.StopPID, sigStop
	}
	r.killNs.Store(r.since())
	res.KilledAtS = time.Duration(r.killNs.Load() - r.startNs).Seconds()
	if err := signalPID(pid, sig); err != nil {
		<-paced
		calls.Wait()
		return fmt.Errorf("signal %v to pid %d: %w", sig, pid, err)
	}
	r.logf("%s pid %d (%s), %d of its clients", sigName(sig), pid, victimAddr, res.VictimClients)
	if sig == sigStop {
		// Never leave the node stopped, whatever happens to this run.
		var contOnce sync.Once
		cont := func() {
			contOnce.Do(func() {
				_ = signalPID(pid, sigCont)
				res.ContinuedAtS = time.Duration(r.since() - r.startNs).Seconds()
				r.logf("SIGCONT pid %d", pid)
			})
		}
		defer cont()
		for end := time.Now().Add(2 * time.Second); !allStopped(pid) && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
		wake := time.NewTimer(cfg.StopFor)
		done := make(chan struct{})
		var waker sync.WaitGroup
		waker.Add(1)
		go func() {
			defer waker.Done()
			select {
			case <-wake.C:
			case <-ctx.Done():
			case <-done:
			}
			cont()
		}()
		defer func() { // before cont's own defer: the waker continues the node and returns
			close(done)
			waker.Wait()
			wake.Stop()
		}()
	}
	<-paced
	r.logf("traffic ended; waiting for the calls in flight")
	calls.Wait()
	r.awaitDeliveries(ctx)
	res.Send, res.Request = tally(r.recs[:r.sent.Load()])

	// The scan: every node but the victim (dead, or fencing itself after SIGCONT).
	var admins []string
	var addrs []string
	for i := range cfg.Addrs {
		if i != cfg.VictimIndex {
			admins, addrs = append(admins, cfg.Admins[i]), append(addrs, cfg.Addrs[i])
		}
	}
	r.logf("scanning the directory on %s", strings.Join(admins, ", "))
	res.Scan = scanUntil(ctx, admins, cfg.ScanTimeout, func() []scanClient {
		cs := make([]scanClient, len(r.clients))
		for i, c := range r.clients {
			addr, id := c.c.Addr(), c.c.ConnID()
			cs[i] = scanClient{Name: c.name, View: indexOf(addrs, addr), Conn: id}
		}
		return cs
	})

	var reconnect, reach []time.Duration
	missedRe, missedReach := 0, 0
	k := r.killNs.Load()
	for _, c := range r.clients {
		if !c.victim.Load() {
			continue
		}
		if t := c.reconnectNs.Load(); t > 0 {
			reconnect = append(reconnect, time.Duration(t-k))
		} else {
			missedRe++
		}
		if t := c.reachNs.Load(); t > 0 {
			reach = append(reach, time.Duration(t-k))
		} else {
			missedReach++
		}
	}
	res.Reconnect, res.Reach = summarize(reconnect, missedRe), summarize(reach, missedReach)
	res.NamesLost = int(r.lost.Load())
	res.Skipped, res.Foreign = int(r.skipped.Load()), int(r.foreign.Load())
	if ctx.Err() != nil {
		return fmt.Errorf("run cut short (--timeout or a signal): %w", ctx.Err())
	}
	return nil
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// dial connects and registers every client, 32 at a time.
func (r *failoverRun) dial(ctx context.Context) error {
	cfg := r.cfg
	runID := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffffff)
	victimAddr := cfg.Addrs[cfg.VictimIndex]
	r.clients = make([]*foClient, cfg.Clients)
	for i := range r.clients {
		r.clients[i] = &foClient{name: fmt.Sprintf("fo-%s-%d", runID, i)}
	}
	sem := make(chan struct{}, 32)
	errs := make([]error, cfg.Clients)
	var wg sync.WaitGroup
	for i, fc := range r.clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			k := len(cfg.Addrs)
			order := make([]string, 0, k)
			for j := range k {
				order = append(order, cfg.Addrs[(i+j)%k])
			}
			c, err := client.Dial(ctx, order, client.Config{
				Name: fc.name, Token: cfg.Token, DialTimeout: time.Second, HandshakeTimeout: time.Second,
				RequestTimeout: cfg.RequestTimeout, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
				OnMessage: func(m client.Message) { r.deliver(i, m.Payload) },
				OnRequest: func(q *client.Request) {
					r.deliver(i, q.Payload)
					_ = q.Reply(q.Payload)
				},
				OnStateChange: func(s client.State) {
					switch s {
					case client.NameLost:
						r.lost.Add(1)
					case client.Connected:
						// killNs is stored after fc.c and fc.victim are: once it is set, both are
						// visible here.
						if r.killNs.Load() != 0 && fc.victim.Load() && fc.reconnectNs.Load() == 0 {
							if a := fc.c.Addr(); a != "" && a != victimAddr {
								fc.reconnectNs.CompareAndSwap(0, r.since())
							}
						}
					}
				},
			})
			if err != nil {
				errs[i] = fmt.Errorf("client %d: %w", i, err)
				return
			}
			fc.c = c
			if err := c.Register(ctx, fc.name); err != nil {
				errs[i] = fmt.Errorf("client %d: register %s: %w", i, fc.name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *failoverRun) closeClients() {
	var wg sync.WaitGroup
	for _, c := range r.clients {
		if c != nil && c.c != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.c.Close()
			}()
		}
	}
	wg.Wait()
}

// maxInFlight bounds the calls in flight; past it a message is skipped (counted).
const maxInFlight = 8192

// pace sends the open-loop traffic until Duration has passed since t0: each message from
// a random client to another random client's name, on a goroutine of its own.
func (r *failoverRun) pace(ctx context.Context, calls *sync.WaitGroup) {
	cfg := r.cfg
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	sem := make(chan struct{}, maxInFlight)
	next := 0
	for due := 0; ; {
		elapsed := time.Duration(r.since() - r.startNs)
		if elapsed >= cfg.Duration || ctx.Err() != nil {
			break
		}
		for target := int(elapsed.Seconds() * cfg.Rate); due < target && next < len(r.recs); due++ {
			select {
			case sem <- struct{}{}:
			default:
				r.skipped.Add(1)
				continue
			}
			id := next
			next++
			rec := &r.recs[id]
			from := rng.IntN(len(r.clients))
			to := rng.IntN(len(r.clients) - 1)
			if to >= from {
				to++
			}
			rec.from, rec.kind = int32(from), foSend
			if cfg.Mode == "request" || cfg.Mode == "mix" && rng.IntN(2) == 1 {
				rec.kind = foRequest
			}
			rec.to.Store(int32(to))
			rec.sentNs.Store(r.startNs + int64(float64(due)/cfg.Rate*1e9))
			calls.Add(1)
			go func() {
				defer calls.Done()
				defer func() { <-sem }()
				r.call(ctx, uint64(id))
			}()
		}
		time.Sleep(time.Millisecond)
	}
	r.sent.Store(int64(next))
}

// call sends message id and records its outcome.
func (r *failoverRun) call(ctx context.Context, id uint64) {
	rec := &r.recs[id]
	c := r.clients[rec.from].c
	name := r.clients[rec.to.Load()].name
	p := appendFailoverPayload(make([]byte, 0, r.cfg.Size), id, rec.from, rec.kind, r.cfg.Size)
	if rec.kind == foSend {
		rec.record(c.SendAck(ctx, name, p))
		return
	}
	reply, err := c.Request(ctx, name, p)
	if rid, _, _, ok := parseFailoverPayload(reply); err == nil && (!ok || rid != id) {
		rec.outcomes.Add(1)
		rec.outcome.Store(outcomeWrong)
		return
	}
	rec.record(err)
}

// awaitDeliveries waits, at most Grace, until every acknowledged SEND has arrived.
func (r *failoverRun) awaitDeliveries(ctx context.Context) {
	n := int(r.sent.Load())
	end := time.Now().Add(r.cfg.Grace)
	for time.Now().Before(end) && ctx.Err() == nil {
		missing := 0
		for i := range r.recs[:n] {
			rec := &r.recs[i]
			if rec.kind == foSend && rec.outcome.Load() == outcomeOK && rec.deliveries.Load() == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether it slept the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case sigKill:
		return "SIGKILL"
	case sigStop:
		return "SIGSTOP"
	}
	return sig.String()
}
