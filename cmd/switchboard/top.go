package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/switchboard/switchboard/internal/config"
)

// defaultAdmin is where a node serves its admin endpoints with the built-in defaults.
const defaultAdmin = "127.0.0.1:7401"

func runTop(c *cli, args []string) int {
	fs := newFlags("top", "switchboard top [flags]",
		"Shows nodes live from their admin endpoints (/metrics and /zone), refreshed every\n"+
			"--interval: per node its zone and the zone input closest to its limit, connections and\n"+
			"headroom under the cap, frames in and out and bytes per second, messages routed per\n"+
			"second (messages sent, requests, responses), ERRORs per second by code, p99 request\n"+
			"latency over the interval, and Go memory against its budget (GOMEMLIMIT). Rates are\n"+
			"differences of the nodes' counters between two scrapes over the time between them.\n"+
			"Frames out need a node that exports "+framesOutMetric+"; otherwise \"-\".\n\n"+
			"On a terminal the screen is redrawn (ANSI clear and home); otherwise, or with --json,\n"+
			"each refresh prints one line per node: key=value pairs (or a JSON object) with the\n"+
			"counter totals, the window in seconds and the rates.\n\n"+
			"Exit status: 0, or 1 if no node could be scraped at the last refresh; 2 for bad usage.")
	admin := fs.String("admin", defaultAdmin, "comma-separated admin `addresses` (host:port or URL) of the nodes")
	interval := fs.Duration("interval", time.Second, "time between refreshes")
	count := fs.Int("count", 0, "stop after this many refreshes; 0: until SIGINT or SIGTERM")
	sortBy := fs.String("sort", "zone", "order of the nodes: "+strings.Join(sortKeys, ", ")+
		" (zone: worst zone first, then busiest)")
	jsonOut := fs.Bool("json", false, "print one JSON object per node and refresh")
	tokenFile := fs.String("admin-token-file", "", "send the bearer token in `FILE` (first line) to the admin endpoints; "+
		"without it the token comes from "+config.EnvAdminToken+", if set")
	fs.Section("Nodes", "admin", "admin-token-file")
	fs.Section("Display", "interval", "count", "sort", "json")
	pos, code, done := parseInterspersed(c, fs, args)
	if done {
		return code
	}
	var nodes []string
	for _, a := range strings.Split(*admin, ",") {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(nodes, a) {
			nodes = append(nodes, a)
		}
	}
	switch {
	case len(pos) > 0:
		fs.Fail(c.stderr, fmt.Sprintf("unexpected argument %q: top takes only flags (nodes are --admin)", pos[0]))
		return exitUsage
	case len(nodes) == 0:
		fs.Fail(c.stderr, "--admin: no address given")
		return exitUsage
	case *interval <= 0:
		fs.Fail(c.stderr, fmt.Sprintf("--interval: want a positive duration, got %v", *interval))
		return exitUsage
	case *count < 0:
		fs.Fail(c.stderr, fmt.Sprintf("--count: want 0 or more, got %d", *count))
		return exitUsage
	case !slices.Contains(sortKeys, *sortBy):
		fs.Fail(c.stderr, fmt.Sprintf("--sort: want one of %s, got %q", strings.Join(sortKeys, ", "), *sortBy))
		return exitUsage
	}

	token := getenv(c.environ, config.EnvAdminToken)
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fs.Fail(c.stderr, fmt.Sprintf("--admin-token-file: %v", err))
			return exitUsage
		}
		line, _, _ := strings.Cut(string(b), "\n")
		token = strings.TrimSpace(line)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// top's own transport, so that its kept-alive connections close when it returns.
	transport := &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 2 * max(*interval, time.Second)}
	defer transport.CloseIdleConnections()
	t := &top{
		nodes:    nodes,
		scraper:  scraper{http: &http.Client{Transport: transport, Timeout: max(*interval, time.Second)}, token: token},
		interval: *interval,
		sortBy:   *sortBy,
		json:     *jsonOut,
		screen:   !*jsonOut && isTerminal(c.stdout),
		out:      c.stdout,
	}
	return t.run(ctx, *count)
}

// top is the refresh loop. It belongs to the goroutine running runTop.
type top struct {
	nodes    []string
	scraper  scraper
	interval time.Duration
	sortBy   string
	json     bool
	screen   bool // redraw a terminal; else a log of lines
	out      io.Writer
}

// run scrapes once to have counters to take differences from, then refreshes count times
// (0: until ctx ends).
func (t *top) run(ctx context.Context, count int) int {
	last := map[string]sample{} // the latest good sample of each node
	for _, s := range t.scraper.scrapeAll(ctx, t.nodes) {
		if s.err == nil {
			last[s.node] = s
		}
	}
	code := exitOK
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for i := 0; count == 0 || i < count; i++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return code
		}
		views := make([]nodeView, 0, len(t.nodes))
		ok := 0
		for _, s := range t.scraper.scrapeAll(ctx, t.nodes) {
			views = append(views, view(s, last[s.node]))
			if s.err == nil {
				last[s.node] = s
				ok++
			}
		}
		if ctx.Err() != nil {
			return code
		}
		code = exitOK
		if ok == 0 {
			code = exitFailure
		}
		sortViews(views, t.sortBy)
		switch {
		case t.json:
			for _, v := range views {
				writeJSONLine(t.out, v)
			}
		case t.screen:
			t.draw(views)
		default:
			for _, v := range views {
				fmt.Fprintln(t.out, logLine(v))
			}
		}
	}
	return code
}

// isTerminal reports whether w is a character device (a terminal), without a terminal
// library: top needs only ANSI clear and home, which every terminal emulator speaks.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// draw clears the terminal and writes the table.
func (t *top) draw(vs []nodeView) {
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J")
	fmt.Fprintf(&b, "switchboard top: %d node(s), %s, every %v, sorted by %s (^C quits)\n\n",
		len(vs), time.Now().Format("15:04:05"), t.interval, t.sortBy)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "NODE\tZONE\tWORST INPUT\tCONNS\tHEADROOM\tIN f/s\tOUT f/s\tIN B/s\tOUT B/s\tROUTED/s\tERR/s\tP99\tMEMORY/BUDGET\tERRORS/s BY CODE\t\n")
	for _, v := range vs {
		if v.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\t\t\t\t\t%s\t\n", v.Node, "DOWN", v.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %.0f%%\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			v.Node, v.Zone, v.Worst, 100*v.WorstValue, v.Conns, v.Headroom,
			rateText(v.InFPS), rateText(v.OutFPS), bytesRate(v.InBPS), bytesRate(v.OutBPS),
			rateText(v.RoutedPS), rateText(v.ErrorsPS), latencyText(v.P99), memText(v), codesText(v.ErrorsByPS, " "))
	}
	_ = tw.Flush()
	_, _ = io.WriteString(t.out, b.String())
}

// logLine is a refresh of one node as key=value pairs, for logs and tests: totals, the
// window and exact rates.
func logLine(v nodeView) string {
	ts := v.Time.UTC().Format(time.RFC3339Nano)
	if v.Error != "" {
		return fmt.Sprintf("time=%s node=%s error=%q", ts, v.Node, v.Error)
	}
	limit := "none"
	if v.MemLimit > 0 {
		limit = strconv.FormatInt(v.MemLimit, 10)
	}
	framesOut := "-"
	if v.FramesOut != nil {
		framesOut = num(*v.FramesOut)
	}
	return fmt.Sprintf("time=%s node=%s zone=%s worst=%s:%.3f connections=%d connections_max=%d headroom=%d "+
		"frames_in=%s frames_out=%s routed=%s errors=%s window=%s in_fps=%s out_fps=%s in_bps=%s out_bps=%s "+
		"routed_ps=%s errors_ps=%s errors_by_code=%s p99_ms=%s memory=%d memory_limit=%s",
		ts, v.Node, v.Zone, v.Worst, v.WorstValue, v.Conns, v.ConnsMax, v.Headroom,
		num(v.FramesIn), framesOut, num(v.Routed), num(v.Errors), num(v.Window),
		exact(v.InFPS), exact(v.OutFPS), exact(v.InBPS), exact(v.OutBPS), exact(v.RoutedPS), exact(v.ErrorsPS),
		codesText(v.ErrorsByPS, ","), exactMillis(v.P99), v.Mem, limit)
}

// num formats a counter or a window exactly.
func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// exact formats a rate exactly (a test recomputes it), "-" when unknown.
func exact(p *float64) string {
	if p == nil {
		return "-"
	}
	return num(*p)
}

func exactMillis(p *float64) string {
	if p == nil {
		return "-"
	}
	return num(*p * 1000)
}

// rateText is a rate for the screen: 0.5, 12.3, 1234, 12.3k, 1.2M.
func rateText(p *float64) string {
	if p == nil {
		return "-"
	}
	r := *p
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.1fM", r/1e6)
	case r >= 1e4:
		return fmt.Sprintf("%.1fk", r/1e3)
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

func bytesRate(p *float64) string {
	if p == nil {
		return "-"
	}
	return sizeText(*p)
}

// sizeText is a byte count in binary units.
func sizeText(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f%s", n, units[i])
	}
	return fmt.Sprintf("%.1f%s", n, units[i])
}

func latencyText(p *float64) string {
	if p == nil {
		return "-"
	}
	return time.Duration(*p * float64(time.Second)).Round(time.Microsecond).String()
}

func memText(v nodeView) string {
	if v.MemLimit <= 0 {
		return sizeText(float64(v.Mem)) + "/none"
	}
	return fmt.Sprintf("%s/%s %.0f%%", sizeText(float64(v.Mem)), sizeText(float64(v.MemLimit)),
		100*float64(v.Mem)/float64(v.MemLimit))
}

// codesText lists error rates by code, highest first: "NO_ROUTE:3,QUEUE_FULL:1.5".
func codesText(m map[string]float64, sep string) string {
	if len(m) == 0 {
		return "-"
	}
	codes := make([]string, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool {
		if m[codes[i]] != m[codes[j]] {
			return m[codes[i]] > m[codes[j]]
		}
		return codes[i] < codes[j]
	})
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = c + ":" + strconv.FormatFloat(m[c], 'g', 4, 64)
	}
	return strings.Join(parts, sep)
}
