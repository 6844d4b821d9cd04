package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/bench/floor"
)

// scenarioAbout is each scenario's description, for usage and its --help.
var scenarioAbout = map[string]string{
	ScenarioEcho: "ECHO frames, closed loop (--pipeline per connection) or open loop (--rate).",
	ScenarioConnect: "Opens --conns connections at --ramp/s, HELLOs each and holds them for --duration.\n" +
		"Reports the rate achieved second by second, refusals by ERROR code and failures by\n" +
		"cause (EADDRNOTAVAIL: no local port left, EMFILE, ECONNREFUSED, timeout...). Before it\n" +
		"starts it prints the ephemeral port range and the TIME_WAIT sockets toward the targets,\n" +
		"and warns when they will not fit. One process holds at most its open-file limit: past\n" +
		"that use --procs K (sources 127.0.0.2..K+1, one worker each) and several nodes.\n" +
		"--register gives every connection a name; --reconnect watches the held connections and\n" +
		"brings a lost one back on another --addr (its name REGISTERed again), reporting the\n" +
		"losses and the times from each loss, and from the first, to reconnected and re-registered.",
	ScenarioRoute: "Every connection registers a name and SENDs (--mode request: REQUESTs) to random\n" +
		"other names; end-to-end latency (--mode request: the round trip at the requester)\n" +
		"and loss.",
	ScenarioOverload: "A light probe flow, then a spike of --conns connections driving pipelined ECHO above\n" +
		"the server's limits, then recovery: refusals by code, RSS peak, time for the probe's\n" +
		"p99 to return to its baseline.",
	ScenarioSoak: "A steady open-loop mix of echo and route at --rate for --duration.",
}

// printUsage writes bench's own usage: the scenarios and what each does.
func printUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: switchboard bench SCENARIO [flags]\n\nScenarios:\n")
	for _, s := range scenarios {
		fmt.Fprintf(w, "  %-9s %s\n", s, strings.ReplaceAll(scenarioAbout[s], "\n", "\n            "))
	}
	fmt.Fprintf(w, "  %-9s %s\n", ScenarioFailover, strings.ReplaceAll(failoverAbout, "\n", "\n            "))
	fmt.Fprint(w, "\nRun 'switchboard bench SCENARIO --help' for a scenario's flags. Targets must be\n"+
		"loopback addresses unless --allow-remote is given.\n")
}

// Main implements `switchboard bench ARGS...` (args exclude "bench") and returns the exit
// status: 0 when the run completed (refusals are results), 1 when the run failed (nothing
// connected, a worker crashed), 2 for bad usage. The hidden sub-commands "worker" and
// "floor-server" are the re-executed children of --procs and --floor.
func Main(args []string, stdout, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "bench: cannot find own executable: %v\n", err)
		return 1
	}
	return mainWith(args, stdout, stderr, runner{exe: exe, exeArgs: []string{"bench"}})
}

// mainWith is Main with the re-exec settings of r (tests run parts in process).
func mainWith(args []string, stdout, stderr io.Writer, r runner) int {
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		printUsage(stdout)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "worker":
		return workerMain(ctx, os.Stdin, stdout, stderr)
	case "floor-server":
		return floorMain(ctx, args[1:], os.Stdin, stdout, stderr)
	case ScenarioFailover:
		return failoverMain(ctx, args[1:], stdout, stderr)
	}
	if _, ok := scenarioAbout[args[0]]; !ok {
		fmt.Fprintf(stderr, "switchboard bench: unknown scenario %q (want one of %s)\nsee 'switchboard bench --help'\n",
			args[0], strings.Join(append(scenarios[:len(scenarios):len(scenarios)], ScenarioFailover), ", "))
		return 2
	}
	cfg := Config{Scenario: args[0]}
	fs, addrs := cfg.flags()
	if code, done := fs.Parse(args[1:], stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Fail(stderr, "unexpected arguments: "+strings.Join(fs.Args(), " "))
		return 2
	}
	cfg.Addrs = splitList(*addrs)
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintf(stderr, "see 'switchboard bench %s --help'\n", cfg.Scenario)
		return 2
	}
	stderr = &lockedWriter{w: stderr} // workers' stderr is copied in by exec's goroutines
	r.cfg, r.stderr = cfg, stderr
	res, runErr := r.Run(ctx)

	summary := stdout
	if cfg.JSON == "-" {
		summary = stderr
	}
	res.WriteSummary(summary)
	status := 0
	if runErr != nil {
		fmt.Fprintf(stderr, "bench: run failed: %v\n", runErr)
		status = 1
	}
	if cfg.JSON != "" {
		if err := writeJSON(cfg.JSON, stdout, res); err != nil {
			fmt.Fprintf(stderr, "bench: --json: %v\n", err)
			status = 1
		}
	}
	if cfg.Plot != "" {
		if err := writePlot(cfg.Plot, res); err != nil {
			fmt.Fprintf(stderr, "bench: --plot: %v\n", err)
			status = 1
		}
	}
	return status
}

// writeJSON writes res as indented JSON to the file name, or to stdout for "-".
func writeJSON(name string, stdout io.Writer, res any) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if name == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(name, b, 0o644)
}

// workerMain is a --procs worker: it reads its partSpec as the first line of stdin, runs
// the part, and writes partMsgs as JSON lines on stdout. "go RATE" on stdin starts the
// load, RATE being the part's share of the open-loop --rate (partRates); the end of stdin
// (the parent closed it or died) stops the worker.
func workerMain(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) int {
	br := bufio.NewReader(stdin)
	line, err := br.ReadBytes('\n')
	if err != nil {
		fmt.Fprintf(stderr, "bench worker: no spec on stdin: %v\n", err)
		return 1
	}
	var spec partSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		fmt.Fprintf(stderr, "bench worker: bad spec: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	goCh := make(chan float64, 1)
	go func() {
		defer cancel()
		started := false
		for {
			l, err := br.ReadString('\n')
			if f := strings.Fields(l); len(f) > 0 && f[0] == "go" && !started {
				started = true
				var rate float64
				if len(f) > 1 {
					rate, _ = strconv.ParseFloat(f[1], 64)
				}
				goCh <- rate
			}
			if err != nil {
				return
			}
		}
	}()
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	failed := false
	runPart(ctx, spec, func(m partMsg) {
		mu.Lock()
		defer mu.Unlock()
		failed = failed || m.Kind == "error"
		if err := enc.Encode(m); err != nil {
			cancel()
		}
	}, goCh)
	if failed {
		return 1
	}
	return 0
}

// floorMain runs the bare gnet echo server until stdin ends or a signal arrives. It prints
// the bound address as the first line of stdout.
func floorMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("switchboard bench floor-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	s, err := floor.Start(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "bench floor-server: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, s.Addr().String())
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(sctx); err != nil {
		fmt.Fprintf(stderr, "bench floor-server: stop: %v\n", err)
	}
	return 0
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
