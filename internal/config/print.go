package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard/switchboard/cluster"
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/server"
	"github.com/switchboard/switchboard/tuning"
)

// Redacted replaces a secret's value in WriteYAML's output.
const Redacted = "<redacted>"

// WriteYAML writes l's settings as a YAML config file: every key in Fields order, then
// profile, each followed by a comment naming its source. The comment also shows what a
// value means where the number alone does not: "(off)" for a 0 that turns a setting off,
// and for loops and max-connections at 0 the number they resolve to on this host
// ("auto: 2 = GOMAXPROCS"). The profile's Go runtime settings (GOGC, GOMEMLIMIT,
// GOMAXPROCS) follow as comments. Secret values other than "" are written as Redacted.
// Otherwise the output loads back with LoadFile to the same Config.
func WriteYAML(w io.Writer, l Loaded) error {
	return writeYAML(w, Fields(), reflect.ValueOf(&l.Config).Elem(), l)
}

// note explains the value text of field f, or returns "".
func note(f Field, text string, l Loaded) string {
	zero := text == "0" || text == "0s"
	switch {
	case zero && f.ZeroMeansOff():
		return "(off)"
	case text == "" && f.Key == "server-id":
		h, _ := os.Hostname()
		return fmt.Sprintf("(auto: %q = the host name)", h)
	case zero && f.Key == "loops" && l.Config.Cluster != cluster.ModeOff:
		procs := effectiveGOMAXPROCS(l.Profile)
		return fmt.Sprintf("(auto: %d = GOMAXPROCS %d less 1, a cluster node)", ClusterLoops(procs), procs)
	case zero && f.Key == "loops":
		return fmt.Sprintf("(auto: %d = GOMAXPROCS)", effectiveGOMAXPROCS(l.Profile))
	case zero && f.Key == "max-connections":
		hard := tuning.ReadHost().NoFileHard // serve raises the soft limit to the hard one
		if hard <= 0 {
			return "(auto: from the open-file limit, which could not be read)"
		}
		n, _ := limits.MaxConnections(0, uint64(hard))
		return fmt.Sprintf("(auto: %d = open-file limit %d less a reserve)", n, hard)
	case zero && f.Key == "max-handshakes":
		hard := tuning.ReadHost().NoFileHard
		if hard <= 0 {
			return "(auto: a tenth of the connection cap, at least 64)"
		}
		conns, _ := limits.MaxConnections(l.Config.MaxConnections, uint64(hard))
		return fmt.Sprintf("(auto: %d = a tenth of the connection cap %d, at least 64)",
			server.HandshakeCap(0, conns), conns)
	}
	return ""
}

// effectiveGOMAXPROCS is the GOMAXPROCS switchboard serve runs with under profile name
// (unless the GOMAXPROCS variable says otherwise).
func effectiveGOMAXPROCS(name string) int {
	if p, ok := tuning.Lookup(name); ok && p.GOMAXPROCS > 0 {
		return p.GOMAXPROCS
	}
	return runtime.GOMAXPROCS(0)
}

// runtimeComment describes the Go runtime settings of l's profile as switchboard serve
// applies them to l's node, as YAML comments.
func runtimeComment(l Loaded) string {
	p, ok := tuning.Lookup(l.Profile)
	if !ok {
		return ""
	}
	gogc, mem, procs := "not set (Go's 100)", "none", fmt.Sprintf("not set (%d, from the CPUs)", runtime.GOMAXPROCS(0))
	switch {
	case p.GOGC > 0 && l.Config.JetStreamNode():
		gogc = fmt.Sprintf("%d (the profile's %d halved: a cluster node with JetStream)", ClusterGOGC(p.GOGC), p.GOGC)
	case p.GOGC > 0:
		gogc = fmt.Sprint(p.GOGC)
	}
	if p.GOMEMLIMIT > 0 {
		mem = fmt.Sprintf("%s (%d bytes)", tuning.FormatBytes(p.GOMEMLIMIT), p.GOMEMLIMIT)
	}
	if p.GOMAXPROCS > 0 {
		procs = fmt.Sprint(p.GOMAXPROCS)
	}
	return fmt.Sprintf("# Go runtime from profile %s (switchboard serve applies it; a GOGC, GOMEMLIMIT or\n"+
		"# GOMAXPROCS environment variable wins):\n#   GOGC: %s\n#   GOMEMLIMIT: %s\n#   GOMAXPROCS: %s\n",
		p.Name, gogc, mem, procs)
}

// writeYAML writes the fields of struct value sv, and l's profile, file and sources.
// Fields of a section are written in a nested mapping under the section's key.
func writeYAML(w io.Writer, fields []Field, sv reflect.Value, l Loaded) error {
	type line struct{ text, source string } // source "" for a section header
	var lines []line
	section := ""
	for _, f := range fields {
		text := f.format(sv)
		if f.Secret && text != "" {
			text = Redacted
		}
		if f.kind == kindString || f.kind == kindDuration {
			text = yamlString(text)
		}
		sec, name := "", f.Key
		if i := strings.LastIndexByte(f.Key, '.'); i >= 0 {
			sec, name = f.Key[:i], f.Key[i+1:]
		}
		if sec != section {
			// Open every section between the common prefix and sec.
			common := commonSection(section, sec)
			for _, part := range sectionParts(sec, common) {
				lines = append(lines, line{text: indent(part) + part[strings.LastIndexByte(part, '.')+1:] + ":"})
			}
			section = sec
		}
		src := l.Sources[f.Key]
		if n := note(f, f.format(sv), l); n != "" {
			src += " " + n
		}
		lines = append(lines, line{indent(f.Key) + name + ": " + text, src})
	}
	lines = append(lines, line{KeyProfile + ": " + yamlString(l.Profile), l.Sources[KeyProfile]})

	width := 0
	for _, ln := range lines {
		if ln.source != "" {
			width = max(width, len(ln.text))
		}
	}
	var b bytes.Buffer
	b.WriteString("# switchboard effective configuration")
	if l.File != "" {
		fmt.Fprintf(&b, " (config file %s)", l.File)
	}
	b.WriteString("\n# Each comment says where the value came from: default, profile, file, env or flag.\n")
	for _, ln := range lines {
		if ln.source == "" {
			fmt.Fprintf(&b, "%s\n", ln.text)
			continue
		}
		fmt.Fprintf(&b, "%-*s  # %s\n", width, ln.text, ln.source)
	}
	b.WriteString(runtimeComment(l))
	_, err := w.Write(b.Bytes())
	return err
}

// indent returns two spaces per section the dotted key is nested in.
func indent(key string) string { return strings.Repeat("  ", strings.Count(key, ".")) }

// commonSection returns the longest section that contains both a and b.
func commonSection(a, b string) string {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	var common []string
	for i := 0; i < len(pa) && i < len(pb) && pa[i] == pb[i] && pa[i] != ""; i++ {
		common = append(common, pa[i])
	}
	return strings.Join(common, ".")
}

// sectionParts returns the sections from below common down to sec: for "a.b.c" below
// "a", it returns "a.b" and "a.b.c".
func sectionParts(sec, common string) []string {
	if sec == "" {
		return nil
	}
	parts := strings.Split(sec, ".")
	skip := 0
	if common != "" {
		skip = strings.Count(common, ".") + 1
	}
	var out []string
	for i := skip; i < len(parts); i++ {
		out = append(out, strings.Join(parts[:i+1], "."))
	}
	return out
}

// yamlString renders s as a YAML string scalar, quoted only when YAML needs it.
func yamlString(s string) string {
	out, err := yaml.Marshal(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s})
	if err != nil {
		panic("BUG: config: cannot encode a string scalar: " + err.Error())
	}
	return strings.TrimSuffix(string(out), "\n")
}
