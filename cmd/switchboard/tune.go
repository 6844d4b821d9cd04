package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/tuning"
)

const tuneSynopsis = "switchboard tune show [NAME]\n" +
	"       switchboard tune check [--connections N] [--profile NAME] [--json]\n\n" +
	"show lists the tuning profiles, or prints one profile's settings.\n" +
	"check judges this host against a target number of connections (open-file limit,\n" +
	"sysctls, memory, CPU quota), prints what to change, and exits 1 when the host\n" +
	"cannot reach the target."

func runTune(c *cli, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(c.stderr, "Usage: %s\n", tuneSynopsis)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(c.stdout, "Usage: %s\n", tuneSynopsis)
		return exitOK
	case "show":
		return runTuneShow(c, args[1:])
	case "check":
		return runTuneCheck(c, args[1:])
	}
	fmt.Fprintf(c.stderr, "switchboard tune: unknown subcommand %q (want show or check)\nsee 'switchboard tune --help'\n", args[0])
	return exitUsage
}

func unknownProfile(c *cli, name string) int {
	fmt.Fprintf(c.stderr, "switchboard tune: unknown profile %q (want one of %s)\n", name, strings.Join(tuning.Names(), ", "))
	return exitUsage
}

func runTuneShow(c *cli, args []string) int {
	fs := newFlags("tune show", "switchboard tune show [NAME]",
		"Lists the tuning profiles, or prints one profile's settings and why it makes them.")
	if code, done := parseFlags(c, fs, args); done {
		return code
	}
	switch fs.NArg() {
	case 0:
		listProfiles(c.stdout)
		return exitOK
	case 1:
	default:
		fs.Fail(c.stderr, fmt.Sprintf("want at most one profile name, got %q", fs.Args()))
		return exitUsage
	}
	p, ok := tuning.Lookup(fs.Arg(0))
	if !ok {
		return unknownProfile(c, fs.Arg(0))
	}
	showProfile(c.stdout, p)
	return exitOK
}

// showWidth is the widest line tune show prints.
const showWidth = 100

func listProfiles(w io.Writer) {
	rows := [][]string{{"PROFILE", "BUDGET", "CONNECTIONS", "GOGC", "GOMEMLIMIT", "FOR"}}
	for _, p := range tuning.Profiles() {
		name := p.Name
		if name == tuning.Default {
			name += " (default)"
		}
		rows = append(rows, []string{name, tuning.FormatBytes(p.MemoryBudget), fmt.Sprint(p.Connections),
			gogcText(p.GOGC), tuning.FormatBytes(p.GOMEMLIMIT), firstClause(p.Intent)})
	}
	writeTable(w, "", rows, showWidth)
	fmt.Fprint(w, "\nRun 'switchboard tune show NAME' for a profile's settings; choose one with\n"+
		"--profile, SWITCHBOARD_PROFILE or \"profile:\" in the config file.\n")
}

// firstClause returns s up to its first ". ", ": ", " (" or ",", for a one-line summary.
func firstClause(s string) string {
	end := len(s)
	for _, sep := range []string{". ", ": ", " (", ","} {
		if i := strings.Index(s, sep); i >= 0 {
			end = min(end, i)
		}
	}
	return strings.TrimSuffix(s[:end], ".")
}

func gogcText(n int) string {
	if n == 0 {
		return "runtime"
	}
	return fmt.Sprint(n)
}

// showProfile prints every setting the profile makes: runtime, then server settings with
// the default each replaces and why.
func showProfile(w io.Writer, p tuning.Profile) {
	fmt.Fprintf(w, "profile %s: built for %d connections in %s per node\n\n", p.Name, p.Connections, tuning.FormatBytes(p.MemoryBudget))
	fmt.Fprintf(w, "%s\n\n", wrap(p.Intent, showWidth, "  "))

	fmt.Fprint(w, "Go runtime (applied by switchboard serve; the GOGC, GOMEMLIMIT and GOMAXPROCS\nenvironment variables override it):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if p.GOGC > 0 {
		fmt.Fprintf(tw, "  GOGC\t%d\n", p.GOGC)
	} else {
		fmt.Fprint(tw, "  GOGC\tnot set (Go's 100)\n")
	}
	if p.GOMEMLIMIT > 0 {
		fmt.Fprintf(tw, "  GOMEMLIMIT\t%s\t(%d bytes)\n", tuning.FormatBytes(p.GOMEMLIMIT), p.GOMEMLIMIT)
	} else {
		fmt.Fprint(tw, "  GOMEMLIMIT\tnone\n")
	}
	if p.GOMAXPROCS > 0 {
		fmt.Fprintf(tw, "  GOMAXPROCS\t%d\n", p.GOMAXPROCS)
	} else {
		fmt.Fprint(tw, "  GOMAXPROCS\tnot set (the Go runtime follows the CPU count and the cgroup CPU limit)\n")
	}
	_ = tw.Flush()

	defaults := config.DefaultNode()
	fmt.Fprint(w, "\nServer settings (a config file, SWITCHBOARD_* variables and flags override them):\n")
	var rows [][]string
	setKeys := map[string]bool{}
	for _, f := range config.Fields() {
		text, ok := p.Settings[f.Key]
		if !ok {
			continue
		}
		setKeys[f.Key] = true
		rows = append(rows, []string{f.Key, text, "(default " + f.Format(&defaults) + ")", p.Why[f.Key]})
	}
	if len(rows) == 0 {
		fmt.Fprint(w, "  none: every server setting keeps its built-in default\n")
	}
	writeTable(w, "  ", rows, showWidth)
	var notes []string
	for _, f := range config.Fields() {
		if why := p.Why[f.Key]; why != "" && !setKeys[f.Key] {
			// Continuation lines hang under the text, four columns in.
			notes = append(notes, strings.TrimPrefix(wrap(f.Key+": "+why, showWidth, "    "), "  "))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\nNotes:\n%s\n", strings.Join(notes, "\n"))
	}
	fmt.Fprintf(w, "\nEvery other setting keeps its default: 'switchboard serve --profile %s --print-config'\nprints them all, each with its source.\n", p.Name)
}

// writeTable writes rows in columns two spaces apart, each line starting with indent, and
// wraps the last column so that no line is wider than width: its continuation lines start
// under it. Widths count runes.
func writeTable(w io.Writer, indent string, rows [][]string, width int) {
	var cols []int // widths of every column but the last
	for _, r := range rows {
		for i, cell := range r[:len(r)-1] {
			if i == len(cols) {
				cols = append(cols, 0)
			}
			cols[i] = max(cols[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		b.Reset()
		b.WriteString(indent)
		for i, cell := range r[:len(r)-1] {
			b.WriteString(cell + strings.Repeat(" ", cols[i]-utf8.RuneCountInString(cell)+2))
		}
		hang := strings.Repeat(" ", utf8.RuneCountInString(b.String()))
		last := strings.TrimPrefix(wrap(r[len(r)-1], width, hang), hang)
		fmt.Fprintln(w, strings.TrimRight(b.String()+last, " "))
	}
}

// wrap breaks s into lines of at most width columns, each starting with indent.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	col := 0
	for _, word := range strings.Fields(s) {
		switch {
		case col == 0:
			b.WriteString(indent)
			col = len(indent)
		case col+1+utf8.RuneCountInString(word) > width:
			b.WriteString("\n" + indent)
			col = len(indent)
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += utf8.RuneCountInString(word)
	}
	return b.String()
}

func runTuneCheck(c *cli, args []string) int {
	fs := newFlags("tune check", "switchboard tune check [--connections N] [--profile NAME] [--json]",
		"Judges this host against a target number of connections (open-file limit, sysctls,\n"+
			"memory, CPU quota), prints what to change, and exits 1 when the host cannot reach\n"+
			"the target.")
	conns := fs.Int("connections", 0, "target connections on this host; 0 means the profile's design capacity")
	profile := fs.String("profile", "", "profile the nodes run (default: SWITCHBOARD_PROFILE, else balanced)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object (readings, findings, sysctl and systemd snippets)")
	fs.Env = func(name string) string {
		if name == "profile" {
			return config.EnvName(config.KeyProfile)
		}
		return ""
	}
	if code, done := parseFlags(c, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Fail(c.stderr, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
		return exitUsage
	}
	name := *profile
	if name == "" {
		name = envValue(c.environ, config.EnvName(config.KeyProfile))
	}
	if name == "" {
		name = tuning.Default
	}
	p, ok := tuning.Lookup(name)
	if !ok {
		return unknownProfile(c, name)
	}
	target := *conns
	if target < 0 {
		fs.Fail(c.stderr, fmt.Sprintf("--connections must be positive, got %d", target))
		return exitUsage
	}
	if target == 0 {
		target = p.Connections
	}

	r := tuning.ReadHost()
	findings := p.Check(target, r)
	if *asJSON {
		return writeCheckJSON(c, p, target, r, findings)
	}
	printFindings(c.stdout, p, target, findings)
	fmt.Fprintf(c.stdout, "\nsysctl settings:\n%s", indentLines(tuning.SysctlSnippet(target, findings), "  "))
	fmt.Fprintf(c.stdout, "\nsystemd unit (deploy/switchboard.service has it):\n%s", indentLines(tuning.SystemdHint(target), "  "))

	var failed, warned []string
	for _, f := range findings {
		switch f.Severity {
		case tuning.Fail:
			failed = append(failed, f.Check)
		case tuning.Warn:
			warned = append(warned, f.Check)
		}
	}
	summary := fmt.Sprintf("%d %s", len(warned), plural(len(warned), "warning", "warnings"))
	if len(warned) > 0 {
		summary += " (" + strings.Join(warned, ", ") + ")"
	}
	if len(failed) > 0 {
		fmt.Fprintf(c.stdout, "\nRESULT: this host cannot reach %d connections as it is: %d %s failed (%s), %s.\n",
			target, len(failed), plural(len(failed), "check", "checks"), strings.Join(failed, ", "), summary)
		return exitFailure
	}
	fmt.Fprintf(c.stdout, "\nRESULT: this host can hold %d connections with profile %s; %s.\n", target, p.Name, summary)
	return exitOK
}

// checkReport is tune check --json's output. Its keys are a contract with scripts.
type checkReport struct {
	Target   int                 `json:"target"`
	Profile  string              `json:"profile"`
	Result   string              `json:"result"` // worst severity: ok, warn or fail
	Host     tuning.HostReadings `json:"host"`   // -1: could not be read
	Findings []tuning.Finding    `json:"findings"`
	Sysctl   string              `json:"sysctl"`  // a sysctl.d file
	Systemd  string              `json:"systemd"` // unit lines
}

// writeCheckJSON prints the report as JSON and returns tune check's exit status.
func writeCheckJSON(c *cli, p tuning.Profile, target int, r tuning.HostReadings, fs []tuning.Finding) int {
	worst := tuning.Worst(fs)
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false) // ">=" reads better than "\u003e="
	enc.SetIndent("", "  ")
	err := enc.Encode(checkReport{Target: target, Profile: p.Name, Result: worst.String(), Host: r,
		Findings: fs, Sysctl: tuning.SysctlSnippet(target, fs), Systemd: tuning.SystemdHint(target)})
	if err != nil {
		fmt.Fprintf(c.stderr, "switchboard tune check: %v\n", err)
		return exitFailure
	}
	if worst == tuning.Fail {
		return exitFailure
	}
	return exitOK
}

func printFindings(w io.Writer, p tuning.Profile, target int, fs []tuning.Finding) {
	fmt.Fprintf(w, "switchboard tune check: %d connections, profile %s (%s per node, built for %d connections)\n\n",
		target, p.Name, tuning.FormatBytes(p.MemoryBudget), p.Connections)
	for _, f := range fs {
		fmt.Fprintf(w, "%-4s  %s\n", strings.ToUpper(f.Severity.String()), f.Check)
		fmt.Fprintf(w, "      read:   %s\n", f.Read)
		fmt.Fprintf(w, "      need:   %s\n", f.Need)
		if f.Change != "" {
			fmt.Fprintf(w, "      change: %s\n", f.Change)
		}
	}
}

func indentLines(s, indent string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(indent + l)
		}
	}
	return b.String()
}

// envValue returns the value of name in environ ("NAME=value" pairs), "" if absent.
func envValue(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}
