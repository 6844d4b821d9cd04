package bench

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/cliflag"
)

// Scenario names.
const (
	ScenarioEcho     = "echo"
	ScenarioConnect  = "connect"
	ScenarioRoute    = "route"
	ScenarioOverload = "overload"
	ScenarioSoak     = "soak"
)

var scenarios = []string{ScenarioEcho, ScenarioConnect, ScenarioRoute, ScenarioOverload, ScenarioSoak}

// Config is one bench run. Its fields are the `switchboard bench` flags (kebab case of the
// field name); zero means the scenario's default, applied by EnsureDefaults. Durations
// are time.Duration, rates per second over the whole run (all connections together).
type Config struct {
	Scenario string `json:"scenario"`
	// Addrs are the servers' client addresses; connections are spread over them round-robin.
	// Default 127.0.0.1:7400. Only loopback unless AllowRemote.
	Addrs []string `json:"addr"`
	// Admin is the server's admin address; its /metrics feeds the server figures.
	Admin string `json:"admin"`
	// ServerPID, when set, makes the server figures come from /proc/PID instead.
	ServerPID int `json:"server_pid"`
	// Conns is the number of connections (overload: spike connections). Default per scenario.
	Conns int `json:"conns"`
	// Duration of the measured phase (connect: how long connections are held; overload:
	// the spike). Default per scenario.
	Duration time.Duration `json:"duration"`
	// Size is the payload size in bytes; at least 8 (a timestamp rides in it). Default 64.
	Size int `json:"size"`
	// Pipeline is the closed-loop window per connection (echo, route). Default 16.
	Pipeline int `json:"pipeline"`
	// Rate, when positive, makes the load open-loop at this many messages/s in total,
	// spread evenly over the connections established (refused and failed ones send
	// nothing; partRates). Overload with Procs: each worker spreads the share of its
	// requested spike connections over those it established. Soak is always open loop:
	// 0 means its default, 5000.
	Rate float64 `json:"rate"`
	// Ramp is the connection opening rate, connections/s; 0 means as fast as possible.
	Ramp float64 `json:"ramp"`
	// Procs splits the connections over this many worker processes (0 or 1: one part, run
	// in this process).
	Procs int `json:"procs"`
	// JSON is where the JSON result goes ("-": stdout; "": nowhere).
	JSON string `json:"json"`
	// Plot is an .svg file to draw throughput and latency over time into.
	Plot string `json:"plot"`
	// Floor also runs the echo load against a bare gnet echo server and reports the ratio.
	Floor bool `json:"floor"`
	// Token is the HELLO token.
	Token string `json:"token"`
	// Interval between status lines on stderr. Default 1s (soak: 10s). While connecting
	// it is used as given; during the load, status lines follow the parts' one-second
	// ticks, so it counts in whole seconds (rounded down, at least 1 s).
	Interval time.Duration `json:"interval"`
	// Mode is route's message kind: "send" (SEND, latency end to end: from the sender's
	// stamp to the MESSAGE read by the receiving connection) or "request" (REQUEST,
	// latency of the round trip measured at the requester when the RESPONSE arrives).
	Mode string `json:"mode"`
	// Timeout bounds each connection's dial and handshake; with a Ramp the whole
	// connecting phase is bounded by Timeout + Conns/Ramp. Default 10s.
	Timeout time.Duration `json:"timeout"`
	// RetryAfter: in the closed loop, a connection told to wait (an ERROR with a
	// retry-after: BUSY, QUEUE_FULL, RATE_LIMITED, ...) sends nothing new until the wait is
	// over, as a well-behaved client does. Off: it refills its window at once.
	RetryAfter bool `json:"retry_after,omitempty"`
	// Grace is how long connections keep reading after the load stops, for answers in
	// flight: a run in one process reads until every message it sent is received or
	// refused, or the grace ends; with Procs above 1, each connection stops after a quiet
	// period (250 ms plus the slowest latency seen) that ends after the load stops. Route
	// --mode request also sends it as every REQUEST's timeout (in whole milliseconds; the
	// server caps it at its max-request-timeout). Default 2s.
	Grace time.Duration `json:"grace"`
	// Baseline is overload's calm phase before the spike (probe only). Default 2s.
	Baseline time.Duration `json:"baseline"`
	// Recover is overload's observation phase after the spike. Default 5s.
	Recover time.Duration `json:"recover"`
	// ProbeRate is overload's probe flow, ECHO messages/s on one connection. Default 200.
	ProbeRate float64 `json:"probe_rate"`
	// AllowRemote permits non-loopback addresses.
	AllowRemote bool `json:"allow_remote"`
	// Register makes connect REGISTER a unique name on every connection after HELLO, so
	// that a held run also fills the name directory (one name per connection).
	Register bool `json:"register"`
	// Keepalive is how often connect PINGs each held connection, the PINGs spread evenly
	// over the interval (not all at once). Default 10s.
	Keepalive time.Duration `json:"keepalive"`
	// Reconnect makes connect watch every held connection (a reader per connection): a
	// connection the server closes is dialled again to another of Addrs, HELLOed and, with
	// Register, its name REGISTERed again, as a client would; the result reports the losses
	// and how long the connections took to come back (Result.Reconnect).
	Reconnect bool `json:"reconnect"`
}

// Limits that keep every run bounded.
const (
	maxConns    = 1_000_000
	maxDuration = 24 * time.Hour
	maxProcs    = 64
	maxPipeline = 4096
	maxSize     = 1 << 20
)

// EnsureDefaults fills zero fields with the scenario's defaults.
func (c *Config) EnsureDefaults() {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if len(c.Addrs) == 0 {
		c.Addrs = []string{"127.0.0.1:7400"}
	}
	switch c.Scenario {
	case ScenarioConnect:
		def(&c.Conns, 1000)
		defD(&c.Keepalive, 10*time.Second)
	case ScenarioOverload:
		def(&c.Conns, 500)
		defD(&c.Duration, 5*time.Second)
	case ScenarioSoak:
		def(&c.Conns, 100)
		defD(&c.Duration, 60*time.Second)
		defD(&c.Interval, 10*time.Second)
		if c.Rate == 0 {
			c.Rate = 5000
		}
	default:
		def(&c.Conns, 50)
	}
	defD(&c.Duration, 10*time.Second)
	def(&c.Size, 64)
	def(&c.Pipeline, 16)
	defD(&c.Interval, time.Second)
	defD(&c.Timeout, 10*time.Second)
	defD(&c.Grace, 2*time.Second)
	defD(&c.Baseline, 2*time.Second)
	defD(&c.Recover, 5*time.Second)
	if c.ProbeRate == 0 {
		c.ProbeRate = 200
	}
	if c.Mode == "" {
		c.Mode = "send"
	}
	if c.Procs == 0 {
		c.Procs = 1
	}
}

// Validate returns every problem in c, each naming its flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("bench: --%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	known := false
	for _, s := range scenarios {
		known = known || s == c.Scenario
	}
	if !known {
		errs = append(errs, fmt.Errorf("bench: unknown scenario %q (want one of %s)", c.Scenario, strings.Join(scenarios, ", ")))
	}
	for _, a := range c.Addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			bad("addr", "%v", err)
			continue
		}
		if !c.AllowRemote && !isLoopback(host) {
			bad("addr", "%s is not a loopback address (add --allow-remote to load a remote server)", a)
		}
	}
	if c.Admin != "" {
		host, _, err := net.SplitHostPort(c.Admin)
		if err != nil {
			bad("admin", "%v", err)
		} else if !c.AllowRemote && !isLoopback(host) {
			bad("admin", "%s is not a loopback address", c.Admin)
		}
	}
	if c.Conns < 1 || c.Conns > maxConns {
		bad("conns", "must be 1..%d, got %d", maxConns, c.Conns)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"duration", c.Duration}, {"interval", c.Interval}, {"timeout", c.Timeout}, {"grace", c.Grace},
		{"baseline", c.Baseline}, {"recover", c.Recover}} {
		if d.v <= 0 || d.v > maxDuration {
			bad(d.name, "must be positive and at most %v, got %v", maxDuration, d.v)
		}
	}
	if c.Size < 8 || c.Size > maxSize {
		bad("size", "must be 8..%d bytes (the payload carries an 8-byte timestamp), got %d", maxSize, c.Size)
	}
	if c.Pipeline < 1 || c.Pipeline > maxPipeline {
		bad("pipeline", "must be 1..%d, got %d", maxPipeline, c.Pipeline)
	}
	if c.Rate < 0 {
		bad("rate", "must not be negative, got %v", c.Rate)
	}
	if c.Ramp < 0 {
		bad("ramp", "must not be negative, got %v", c.Ramp)
	}
	if c.ProbeRate <= 0 || c.ProbeRate > 100_000 {
		bad("probe-rate", "must be in (0, 100000], got %v", c.ProbeRate)
	}
	if c.Procs < 1 || c.Procs > maxProcs {
		bad("procs", "must be 1..%d, got %d", maxProcs, c.Procs)
	}
	if c.Procs > c.Conns && c.Scenario != ScenarioOverload {
		bad("procs", "more worker processes (%d) than connections (%d)", c.Procs, c.Conns)
	}
	if c.Mode != "send" && c.Mode != "request" {
		bad("mode", `must be "send" or "request", got %q`, c.Mode)
	}
	if c.Floor && c.Scenario != ScenarioEcho {
		bad("floor", "only the echo scenario has a floor")
	}
	if c.ServerPID < 0 {
		bad("server-pid", "must not be negative")
	}
	if c.Plot != "" && !strings.HasSuffix(c.Plot, ".svg") {
		bad("plot", "file name must end in .svg (convert it to PNG with any browser or rsvg-convert), got %q", c.Plot)
	}
	if c.Reconnect && c.Scenario != ScenarioConnect {
		bad("reconnect", "only the connect scenario holds connections to reconnect")
	}
	if len(c.Token) > 255 {
		bad("token", "longer than 255 bytes")
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// scenarioFlags are the flags a scenario uses beyond those every scenario has (target,
// --conns, --ramp, --duration, output and --procs); its --help lists only these.
var scenarioFlags = map[string][]string{
	ScenarioEcho:     {"size", "pipeline", "rate", "grace", "floor", "retry-after"},
	ScenarioConnect:  {"register", "keepalive", "reconnect"},
	ScenarioRoute:    {"size", "pipeline", "rate", "mode", "grace", "retry-after"},
	ScenarioOverload: {"size", "pipeline", "rate", "grace", "baseline", "recover", "probe-rate", "retry-after"},
	ScenarioSoak:     {"size", "rate", "grace"},
}

// flagSections groups the bench flags in --help; a scenario shows the ones it defines.
var flagSections = []struct {
	name  string
	flags []string
}{
	{"Target", []string{"addr", "admin", "server-pid", "token", "allow-remote", "timeout"}},
	{"Load", []string{"conns", "ramp", "duration", "size", "pipeline", "retry-after", "rate", "mode", "grace",
		"baseline", "recover", "probe-rate", "floor", "register", "keepalive", "reconnect"}},
	{"Output", []string{"json", "plot", "interval"}},
	{"Processes", []string{"procs"}},
}

// flags binds c's fields to the flags of c.Scenario, which must be known. The flag names
// are a contract with outside scripts. The defaults --help shows are the scenario's.
func (c *Config) flags() (*cliflag.Set, *string) {
	cmd := "switchboard bench " + c.Scenario
	fs := cliflag.New(cmd, cmd+" [flags]", scenarioAbout[c.Scenario]+
		"\nTargets must be loopback addresses unless --allow-remote is given.")
	// Every flag is bound on all; the scenario's set gets the ones it uses.
	all := flag.NewFlagSet(cmd, flag.ContinueOnError)
	addrs := all.String("addr", "127.0.0.1:7400", "server address(es), comma-separated; connections are spread over them")
	all.StringVar(&c.Admin, "admin", "", "server admin address; server RSS/CPU come from http://ADMIN/metrics")
	all.IntVar(&c.ServerPID, "server-pid", 0, "server process id; server RSS/CPU come from /proc/PID (wins over --admin)")
	all.StringVar(&c.Token, "token", "", "HELLO token")
	all.BoolVar(&c.AllowRemote, "allow-remote", false, "allow non-loopback --addr")
	all.DurationVar(&c.Timeout, "timeout", 0, "dial+handshake timeout per connection")
	conns, duration := "connections", "measured phase"
	switch c.Scenario {
	case ScenarioConnect:
		duration = "how long the connections are held"
	case ScenarioOverload:
		conns, duration = "spike connections", "the spike"
	}
	all.IntVar(&c.Conns, "conns", 0, conns)
	all.Float64Var(&c.Ramp, "ramp", 0, "connections opened per second (0: as fast as possible)")
	all.DurationVar(&c.Duration, "duration", 0, duration)
	all.IntVar(&c.Size, "size", 0, "payload bytes, at least 8")
	all.IntVar(&c.Pipeline, "pipeline", 0, "closed-loop messages in flight per connection")
	rate, grace := "open-loop messages/s in total, spread over the connections established (0: closed loop)", ""
	switch c.Scenario {
	case ScenarioSoak:
		rate = "open-loop messages/s in total, spread over the connections established (soak is always open loop; 0: the default)"
	case ScenarioRoute:
		grace = "; --mode request: also every REQUEST's timeout"
	}
	all.BoolVar(&c.RetryAfter, "retry-after", false, "closed loop: after an ERROR with a retry-after (BUSY, QUEUE_FULL, ...) a connection sends nothing new until it has passed, as a well-behaved client does (default: it sends again at once)")
	all.Float64Var(&c.Rate, "rate", 0, rate)
	all.StringVar(&c.Mode, "mode", "", `"send" (SEND, latency end to end) or "request" (REQUEST, latency of the round trip at the requester)`)
	all.DurationVar(&c.Grace, "grace", 0, "time to wait for answers in flight after the load stops (in one process: until every message sent is accounted, or this)"+grace)
	all.DurationVar(&c.Baseline, "baseline", 0, "calm phase before the spike (probe only)")
	all.DurationVar(&c.Recover, "recover", 0, "observation phase after the spike")
	all.Float64Var(&c.ProbeRate, "probe-rate", 0, "probe ECHO messages/s on one connection")
	all.BoolVar(&c.Floor, "floor", false, "also run the load against a bare gnet echo server and report the ratio")
	all.BoolVar(&c.Register, "register", false, "REGISTER a unique name on each connection after HELLO (fills the directory)")
	all.DurationVar(&c.Keepalive, "keepalive", 0, "PING each held connection once per this interval, spread evenly over it")
	all.BoolVar(&c.Reconnect, "reconnect", false, "watch the held connections: one the server closes is dialled again to another --addr (with --register: its name REGISTERed again); reports losses and times to come back")
	all.StringVar(&c.JSON, "json", "", "write the JSON result to `FILE` (- for stdout)")
	all.StringVar(&c.Plot, "plot", "", "draw throughput and latency over time into `FILE`.svg")
	all.DurationVar(&c.Interval, "interval", 0, "status line interval on stderr (during the load in whole seconds, at least 1s)")
	all.IntVar(&c.Procs, "procs", 0, "worker processes to split the connections over (1: no worker, the load runs in this process); worker i connects from 127.0.0.(i+2)")

	specific, uses := map[string]bool{}, map[string]bool{}
	for sc, names := range scenarioFlags {
		for _, name := range names {
			specific[name] = true
			uses[name] = uses[name] || sc == c.Scenario
		}
	}
	for _, sec := range flagSections {
		var defined []string
		for _, name := range sec.flags {
			if f := all.Lookup(name); !specific[name] || uses[name] {
				fs.Var(f.Value, f.Name, f.Usage)
				defined = append(defined, name)
			}
		}
		fs.Section(sec.name, defined...)
	}
	def := Config{Scenario: c.Scenario}
	def.EnsureDefaults()
	eff := def.effective()
	fs.VisitAll(func(f *flag.Flag) {
		f.DefValue = ""
		if v := fmt.Sprint(eff[f.Name]); v != "0" && v != "0s" && v != "false" {
			f.DefValue = v
		}
	})
	return fs, addrs
}

// effective returns every flag's effective value, keyed by flag name, for the JSON.
func (c *Config) effective() map[string]any {
	return map[string]any{
		"addr": strings.Join(c.Addrs, ","), "admin": c.Admin, "server-pid": c.ServerPID,
		"conns": c.Conns, "duration": c.Duration.String(), "size": c.Size, "pipeline": c.Pipeline,
		"rate": c.Rate, "ramp": c.Ramp, "procs": c.Procs, "json": c.JSON, "plot": c.Plot,
		"floor": c.Floor, "token": redact(c.Token), "interval": c.Interval.String(), "mode": c.Mode,
		"timeout": c.Timeout.String(), "grace": c.Grace.String(), "baseline": c.Baseline.String(),
		"recover": c.Recover.String(), "probe-rate": c.ProbeRate, "allow-remote": c.AllowRemote,
		"register": c.Register, "keepalive": c.Keepalive.String(), "reconnect": c.Reconnect,
		"retry-after": c.RetryAfter,
	}
}

func redact(tok string) string {
	if tok == "" {
		return ""
	}
	return "<set>"
}
