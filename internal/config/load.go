package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard/switchboard/tuning"
)

// Where a setting's value came from, in increasing precedence.
const (
	SourceDefault = "default"
	SourceProfile = "profile" // the tuning profile (tuning.Profile.Settings)
	SourceFile    = "file"
	SourceEnv     = "env"
	SourceFlag    = "flag"
)

// Loaded is the result of Load.
type Loaded struct {
	// Config is the node's configuration: DefaultNode with the profile, file, env and
	// flags laid over it, so an explicit 0 stays 0. Loops and MaxConnections stay 0 (auto)
	// unless set: the server resolves them (see WriteYAML for the values they resolve to).
	Config Node
	// Profile is the tuning profile applied: the profile setting, or tuning.Default
	// ("balanced") when it is unset or empty. Its server settings are in Config (with
	// source SourceProfile where nothing overrode them); its runtime settings (GOGC,
	// GOMEMLIMIT, GOMAXPROCS) are applied by switchboard serve, not here.
	Profile string
	// File is the config file read, "" if none.
	File string
	// Sources maps every key of Fields, and "profile", to SourceDefault, SourceProfile,
	// SourceFile, SourceEnv or SourceFlag.
	Sources map[string]string
}

// Load builds a configuration from defaults (DefaultNode), then the tuning profile, then the config
// file, then env, then flags; each overrides the ones before it field by field. The
// profile is named by the profile setting (flag, else env, else file, else "balanced").
// env holds "NAME=value" pairs as os.Environ returns them; only SWITCHBOARD_* names are
// read and unknown ones are ignored. flags, from RegisterFlags after its FlagSet was
// parsed, may be nil. The config file is --config if given, else SWITCHBOARD_CONFIG,
// else none.
//
// Load reports every problem it finds, joined: *Error values for settings, an ErrFile
// error for an unreadable file, then Node.Validate's errors. On error the
// returned Loaded holds whatever could be applied.
func Load(env []string, flags *Flags) (Loaded, error) {
	l := Loaded{Config: DefaultNode()}
	ld := newLoader(&l.Config)
	vars := parseEnv(env)
	path := vars[EnvName(KeyConfig)]
	if p, ok := flags.value(KeyConfig); ok {
		path = p
	}
	if path != "" {
		ld.file(path)
	}
	ld.env(vars)
	ld.flags(flags)
	ld.applyProfile()
	ld.readTokenFile(&l.Config)
	return ld.finish(l)
}

// LoadFile builds a configuration from defaults, the profile the file names (or
// "balanced") and the config file at path only, for checking a file. Errors are as for
// Load.
func LoadFile(path string) (Loaded, error) {
	l := Loaded{Config: DefaultNode()}
	ld := newLoader(&l.Config)
	ld.file(path)
	ld.applyProfile()
	ld.readTokenFile(&l.Config)
	return ld.finish(l)
}

// applyProfile applies the named tuning profile's settings (tuning.Default if none names
// one) to the keys still at their defaults, after the file, env and flags were applied:
// the result is the same as applying the profile first and letting them override it,
// and the profile needs no second reading of the file. The profile's values are text,
// parsed like a file's; a bad one is a bug in tuning that this package's tests catch.
func (ld *loader) applyProfile() {
	name := ld.profile
	if name == "" {
		name = tuning.Default
	}
	p, ok := tuning.Lookup(name)
	if !ok {
		ld.invalid(KeyProfile, ld.sources[KeyProfile], ld.profileWhere,
			fmt.Sprintf("unknown profile %q (want one of %s)", name, strings.Join(tuning.Names(), ", ")))
		return
	}
	ld.profile = name
	for _, f := range ld.fields {
		if text, set := p.Settings[f.Key]; set && ld.sources[f.Key] == SourceDefault {
			ld.apply(f.Key, text, SourceProfile, "profile "+name)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(p.Settings)) {
		if _, known := ld.byKey[key]; !known {
			ld.errs = append(ld.errs, &Error{Key: key, Source: SourceProfile, Where: "profile " + name,
				Msg: "unknown key", Kind: ErrUnknownKey})
		}
	}
}

// loader applies settings to a struct. It works on any struct fieldsOf accepts, so that
// tests can exercise kinds and sections server.Config does not have yet.
type loader struct {
	target   reflect.Value // the struct being filled; addressable
	fields   []Field
	byKey    map[string]Field
	sections map[string]bool // key prefixes of nested structs, "limits"
	sources  map[string]string
	profile  string
	// profileWhere is where the profile setting came from, for its error message.
	profileWhere string
	path         string
	errs         []error
}

func newLoader(target any) *loader {
	v := reflect.ValueOf(target).Elem()
	ld := &loader{
		target:   v,
		fields:   fieldsOf(v.Type()),
		byKey:    make(map[string]Field),
		sections: make(map[string]bool),
		sources:  make(map[string]string),
	}
	for _, f := range ld.fields {
		ld.byKey[f.Key] = f
		ld.sources[f.Key] = SourceDefault
		for i := range len(f.Key) {
			if f.Key[i] == '.' {
				ld.sections[f.Key[:i]] = true
			}
		}
	}
	ld.sources[KeyProfile] = SourceDefault
	return ld
}

// apply parses text for key and records its source, or records the problem.
func (ld *loader) apply(key, text, source, where string) {
	if key == KeyProfile {
		ld.profile, ld.profileWhere = text, where
		ld.sources[key] = source
		return
	}
	f := ld.byKey[key]
	v, err := f.parse(text)
	if err != nil {
		ld.invalid(key, source, where, err.Error())
		return
	}
	f.set(ld.target, v)
	ld.sources[key] = source
}

func (ld *loader) invalid(key, source, where, msg string) {
	ld.errs = append(ld.errs, &Error{Key: key, Source: source, Where: where, Msg: msg, Kind: ErrInvalidValue})
}

// finish validates l (whose Config is ld's target). It applies no defaults: the target
// started from DefaultNode, so a 0 that Validate rejects was set explicitly.
func (ld *loader) finish(l Loaded) (Loaded, error) {
	if err := l.Config.Validate(); err != nil {
		ld.errs = append(ld.errs, err)
	}
	l.Profile, l.File, l.Sources = ld.profile, ld.path, ld.sources
	return l, errors.Join(ld.errs...)
}

// parseEnv returns the SWITCHBOARD_* variables with a non-empty value. As with
// os.Getenv, the first of duplicate names wins.
func parseEnv(env []string) map[string]string {
	vars := make(map[string]string)
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || value == "" {
			continue
		}
		if _, dup := vars[name]; !dup {
			vars[name] = value
		}
	}
	return vars
}

func (ld *loader) env(vars map[string]string) {
	for _, key := range ld.keys() {
		name := EnvName(key)
		if v, ok := vars[name]; ok {
			ld.apply(key, v, SourceEnv, name)
		}
	}
}

func (ld *loader) flags(fl *Flags) {
	for _, key := range ld.keys() {
		if v, ok := fl.value(key); ok {
			ld.apply(key, v, SourceFlag, "--"+key)
		}
	}
}

// keys returns every settable key in declaration order, then profile, so that errors
// come out in a stable order.
func (ld *loader) keys() []string {
	keys := make([]string, 0, len(ld.fields)+1)
	for _, f := range ld.fields {
		keys = append(keys, f.Key)
	}
	return append(keys, KeyProfile)
}

func (ld *loader) file(path string) {
	ld.path = path
	data, err := os.ReadFile(path)
	if err != nil {
		ld.errs = append(ld.errs, fmt.Errorf("%w: %w", ErrFile, err))
		return
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case err == io.EOF:
		return // an empty file sets nothing
	case err != nil:
		ld.errs = append(ld.errs, fmt.Errorf("%w: %s: %v", ErrFile, path, err))
		return
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		ld.errs = append(ld.errs, fmt.Errorf("%w: %s: want one YAML document, found more", ErrFile, path))
		return
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return // a file holding only "---" or "~"
	}
	if root.Kind != yaml.MappingNode {
		ld.errs = append(ld.errs, fmt.Errorf("%w: %s:%d: want a mapping of keys to values", ErrFile, path, root.Line))
		return
	}
	ld.mapping(root, "")
}

// mapping applies a YAML mapping whose keys are prefixed with prefix ("" at the top,
// "limits." in the limits section).
func (ld *loader) mapping(m *yaml.Node, prefix string) {
	seen := make(map[string]int)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		where := fmt.Sprintf("%s:%d", ld.path, k.Line)
		if k.Kind != yaml.ScalarNode {
			ld.invalid(prefix+"?", SourceFile, where, "want a plain key")
			continue
		}
		key := prefix + k.Value
		if first, dup := seen[key]; dup {
			ld.invalid(key, SourceFile, where, fmt.Sprintf("set twice (first at line %d)", first))
			continue
		}
		seen[key] = k.Line
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		switch {
		case ld.sections[key]:
			if v.Kind != yaml.MappingNode {
				ld.invalid(key, SourceFile, where, "want a mapping of "+key+" settings")
				continue
			}
			ld.mapping(v, key+".")
			continue
		case key == KeyConfig:
			ld.invalid(key, SourceFile, where, "a config file cannot name another config file")
			continue
		case key == KeyProfile:
			text, err := yamlText(kindString, v)
			if err != nil {
				ld.invalid(key, SourceFile, where, err.Error())
				continue
			}
			ld.apply(key, text, SourceFile, where)
			continue
		}
		f, known := ld.byKey[key]
		if !known {
			msg := "unknown key"
			if s := ld.suggest(key); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			ld.errs = append(ld.errs, &Error{Key: key, Source: SourceFile, Where: where, Msg: msg, Kind: ErrUnknownKey})
			continue
		}
		if v.Kind == yaml.ScalarNode && v.Value == Off && f.ZeroMeansOff() {
			ld.apply(key, Off, SourceFile, where) // a plain or quoted off, whatever its tag
			continue
		}
		text, err := yamlText(f.kind, v)
		if err != nil {
			ld.invalid(key, SourceFile, where, err.Error())
			continue
		}
		ld.apply(key, text, SourceFile, where)
	}
}

// yamlText checks that a YAML value has the right type for kind k and returns its text
// for Field.parse. YAML's own typing is kept: a quoted "5" is not an integer, and a bare
// 5 is not a duration (it has no unit).
func yamlText(k kind, n *yaml.Node) (string, error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.ScalarNode:
	case yaml.SequenceNode:
		return "", errors.New("want a single value, got a list")
	case yaml.MappingNode:
		return "", errors.New("want a single value, got a mapping")
	default:
		return "", errors.New("want a single value")
	}
	tag := n.ShortTag()
	if tag == "!!null" {
		return "", errors.New("no value (remove the key to use the default)")
	}
	switch k {
	case kindString:
		// Any scalar's literal text: `token: 1234` means the string "1234".
		return n.Value, nil
	case kindBool:
		if tag != "!!bool" {
			return "", fmt.Errorf("want true or false, got %s", describe(n))
		}
	case kindInt, kindUint:
		if tag != "!!int" {
			return "", fmt.Errorf("want an integer, got %s", describe(n))
		}
	case kindFloat:
		if tag != "!!int" && tag != "!!float" {
			return "", fmt.Errorf("want a number, got %s", describe(n))
		}
	case kindDuration:
		if tag == "!!int" || tag == "!!float" {
			return "", fmt.Errorf(`want a duration with a unit such as "5s" or "250ms", got the bare number %s`, n.Value)
		}
		if tag != "!!str" {
			return "", fmt.Errorf(`want a duration such as "5s", got %s`, describe(n))
		}
	}
	return n.Value, nil
}

func describe(n *yaml.Node) string {
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	case "!!int":
		return "the integer " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	}
	return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
}

// suggest returns the known key closest to an unknown one, if it is close enough to be
// a misspelling.
func (ld *loader) suggest(key string) string {
	best, bestDist := "", 3 // at most two edits
	for _, k := range ld.keys() {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
