package config

import (
	"flag"
)

// Flags holds the config flags registered on a FlagSet: one per setting (--listen,
// --max-connections, …), --profile and --config. Values are kept as text and parsed
// by Load, so that every bad flag is reported at once and names its setting.
type Flags struct {
	fs     *flag.FlagSet
	values map[string]*flagValue // by flag name
}

// RegisterFlags defines the config flags on fs and returns them for Load. Each flag's
// usage is its setting's help and its DefValue the default. Call it once per FlagSet.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	fl := &Flags{fs: fs, values: make(map[string]*flagValue)}
	defaults := DefaultNode()
	add := func(name, typeName, def string, isBool bool) {
		v := &flagValue{isBool: isBool, typeName: typeName}
		fs.Var(v, name, help[name])
		fs.Lookup(name).DefValue = def
		fl.values[name] = v
	}
	for _, f := range Fields() {
		add(f.Key, f.TypeName(), f.Format(&defaults), f.kind == kindBool)
	}
	add(KeyProfile, "name", "", false)
	add(KeyConfig, "file", "", false)
	return fl
}

// value returns the flag's text if it was given on the command line. It panics if the
// FlagSet has not been parsed: a programmer error.
func (fl *Flags) value(name string) (string, bool) {
	if fl == nil {
		return "", false
	}
	if !fl.fs.Parsed() {
		panic("BUG: config: Load before the FlagSet was parsed")
	}
	v := fl.values[name]
	if v == nil || !v.set {
		return "", false
	}
	return v.raw, true
}

// flagValue is a flag.Value that keeps the text it was given.
type flagValue struct {
	raw      string
	set      bool
	isBool   bool
	typeName string
}

func (v *flagValue) String() string {
	if v == nil {
		return ""
	}
	return v.raw
}

func (v *flagValue) Set(s string) error {
	v.raw, v.set = s, true
	return nil
}

// IsBoolFlag lets a bool setting be given as a bare --tcp-delay.
func (v *flagValue) IsBoolFlag() bool { return v.isBool }

// Get implements flag.Getter.
func (v *flagValue) Get() any { return v.raw }

// TypeName names the value's type for help text ("int", "duration", …).
func (v *flagValue) TypeName() string { return v.typeName }
