package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/cliflag"
)

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
	// stopped with SIGSTOP at KillAt and continued (SIGCONT) StopFor later; or DrainPID,
	// sent SIGTERM at KillAt (a planned restart: switchboard serve drains, then exits).
	// Exactly one of the three.
	KillPID  int           `json:"kill_pid"`
	StopPID  int           `json:"stop_pid"`
	DrainPID int           `json:"drain_pid"`
	StopFor  time.Duration `json:"stop_for"`
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
	// ClientLog is a file for the Go clients' own log at level info (reconnects,
	// re-registrations and why they were refused); "": none.
	ClientLog string `json:"client_log,omitempty"`
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
	case b2i(c.KillPID > 0)+b2i(c.StopPID > 0)+b2i(c.DrainPID > 0) != 1:
		bad("kill-pid", "give exactly one of --kill-pid, --stop-pid and --drain-pid")
	case c.StopPID > 0 && c.StopFor <= 0:
		bad("stop-for", "--stop-pid needs a positive --stop-for")
	case c.StopPID <= 0 && c.StopFor != 0:
		bad("stop-for", "only with --stop-pid")
	}
	for _, p := range []struct {
		flag string
		pid  int
	}{{"kill-pid", c.KillPID}, {"stop-pid", c.StopPID}, {"drain-pid", c.DrainPID}} {
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
	fs = cliflag.New(cmd, cmd+" --addr A1,A2,A3 --admin M1,M2,M3 (--kill-pid PID | --stop-pid PID --stop-for D | --drain-pid PID) [flags]",
		failoverAbout+"\nTargets must be loopback addresses unless --allow-remote is given.")
	addrs = fs.String("addr", "", "client addresses of the nodes, comma-separated")
	admins = fs.String("admin", "", "admin addresses of the same nodes, same order (for /cluster/names)")
	fs.StringVar(&c.Token, "token", "", "HELLO token")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow non-loopback addresses")
	fs.IntVar(&c.VictimIndex, "victim-index", -1, "index in --addr of the victim node (default: the last)")
	fs.IntVar(&c.KillPID, "kill-pid", 0, "the victim node's pid: SIGKILL at --kill-at")
	fs.IntVar(&c.StopPID, "stop-pid", 0, "the victim node's pid: SIGSTOP at --kill-at, SIGCONT --stop-for later")
	fs.IntVar(&c.DrainPID, "drain-pid", 0, "the victim node's pid: SIGTERM at --kill-at (it drains: GOAWAY, then exits)")
	fs.DurationVar(&c.StopFor, "stop-for", 0, "how long the victim stays stopped")
	fs.DurationVar(&c.KillAt, "kill-at", 5*time.Second, "when the victim is signalled, after the traffic starts")
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
	fs.StringVar(&c.ClientLog, "client-log", "", "write the Go clients' own log (reconnects, re-registrations, refusals) to `FILE`")
	fs.Section("Target", "addr", "admin", "token", "allow-remote")
	fs.Section("Victim", "victim-index", "kill-pid", "stop-pid", "stop-for", "drain-pid", "kill-at")
	fs.Section("Load", "clients", "rate", "mode", "duration", "size", "request-timeout", "grace")
	fs.Section("Check", "scan-timeout", "timeout")
	fs.Section("Output", "json", "client-log")
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
		if err := writeJSON(cfg.JSON, stdout, res); err != nil {
			fmt.Fprintf(stderr, "bench failover: --json: %v\n", err)
			status = 1
		}
	}
	return status
}

// splitList splits a comma-separated flag value, dropping blanks and spaces.
func splitList(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
