package config

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Redacted replaces a secret's value in WriteYAML's output.
const Redacted = "<redacted>"

// WriteYAML writes l's settings as a YAML config file: every key in Fields order, then
// profile, each followed by a comment naming its source. Secret values other than ""
// are written as Redacted. Otherwise the output loads back with LoadFile to the same
// Config.
func WriteYAML(w io.Writer, l Loaded) error {
	return writeYAML(w, Fields(), reflect.ValueOf(&l.Config).Elem(), l)
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
		lines = append(lines, line{indent(f.Key) + name + ": " + text, l.Sources[f.Key]})
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
