package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// EnvPrefix starts every environment variable this package reads.
const EnvPrefix = "SWITCHBOARD_"

// Settings outside Node.
const (
	KeyProfile = "profile" // tuning profile name, carried in Loaded.Profile
	KeyConfig  = "config"  // the config file; env and flag only
)

type kind uint8

const (
	kindString kind = iota + 1
	kindBool
	kindInt
	kindUint
	kindDuration
	kindFloat
)

// Field describes one setting: a field of Node (or of the server.Config it embeds). A field of struct type (other
// than time.Duration) is a section: its fields are settings whose keys are prefixed with
// the section's key and a dot (limits.conn-msg-rate, SWITCHBOARD_LIMITS_CONN_MSG_RATE,
// --limits.conn-msg-rate), and which a YAML file sets in a nested mapping. An embedded
// struct's fields are settings of their own, without a prefix.
type Field struct {
	Name string // Go field path, "MaxConnections" or "Limits.ConnMsgRate"
	Key  string // config key and flag name, "max-connections"
	Env  string // environment variable, "SWITCHBOARD_MAX_CONNECTIONS"
	Help string // one line for --help and the example config
	// Secret fields are redacted by WriteYAML and must not be logged.
	Secret bool

	index []int // for reflect.Value.FieldByIndex
	typ   reflect.Type
	kind  kind
}

// Fields returns one Field per setting of Node, in declaration order: the server's, then
// the node's own. It panics if Node gains a field of a kind this package cannot parse:
// that is a programmer error, caught by the package's tests.
func Fields() []Field {
	return fieldsOf(reflect.TypeFor[Node]())
}

// fieldsOf returns the settings of struct type t.
func fieldsOf(t reflect.Type) []Field {
	var fields []Field
	var walk func(t reflect.Type, index []int, name, key string)
	walk = func(t reflect.Type, index []int, name, key string) {
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			idx := append(append([]int(nil), index...), i)
			k := kindOf(sf.Type)
			if k == 0 && sf.Type.Kind() == reflect.Struct {
				if sf.Anonymous {
					walk(sf.Type, idx, name, key)
				} else {
					walk(sf.Type, idx, name+sf.Name+".", key+Kebab(sf.Name)+".")
				}
				continue
			}
			f := Field{
				Name:  name + sf.Name,
				Key:   key + Kebab(sf.Name),
				index: idx,
				typ:   sf.Type,
				kind:  k,
			}
			f.Env, f.Help, f.Secret = EnvName(f.Key), help[f.Key], secret[f.Key]
			if f.kind == 0 {
				panic(fmt.Sprintf("BUG: config: %v.%s has unsupported type %v", t, f.Name, sf.Type))
			}
			fields = append(fields, f)
		}
	}
	walk(t, nil, "", "")
	return fields
}

// Off is the word that sets a setting whose 0 means off (ZeroMeansOff) to 0, wherever a
// value is written: --idle-timeout off, SWITCHBOARD_CONN_MSG_RATE=off, "idle-timeout: off".
const Off = "off"

// zeroOff are the numeric settings whose 0 means off, none or unlimited: they accept Off,
// and --print-config says "(0 = off)" next to them. Read-only. Every other numeric
// setting either must not be 0 (server.Config.Validate says so) or is auto at 0 (loops,
// max-connections) or means the kernel's choice (socket buffers) or one second's worth
// (bursts).
var zeroOff = map[string]bool{
	"idle-timeout": true, "tcp-keep-alive": true, "tcp-defer-accept": true, "drain-period": true,
	"conn-msg-rate": true, "conn-byte-rate": true, "node-msg-rate": true, "accept-rate": true,
	"max-conns-per-ip": true, "zone-hysteresis": true, "zone-min-dwell": true,
	"auth-failures-per-ip": true, "route-credit": true, "write-coalesce": true,
}

// ZeroMeansOff reports whether 0 turns the setting off (and Off is accepted for it).
func (f Field) ZeroMeansOff() bool { return zeroOff[f.Key] }

// Lookup returns the Field with the given key.
func Lookup(key string) (Field, bool) {
	for _, f := range Fields() {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

func kindOf(t reflect.Type) kind {
	if t == reflect.TypeFor[time.Duration]() {
		return kindDuration
	}
	switch t.Kind() {
	case reflect.String:
		return kindString
	case reflect.Bool:
		return kindBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return kindInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return kindUint
	case reflect.Float32, reflect.Float64:
		return kindFloat
	}
	return 0
}

// Kebab converts a Go field name to a config key: MaxConnections → max-connections,
// TCPDelay → tcp-delay, NodeID → node-id. A run of capitals is one word (an acronym)
// whose last capital starts the next word if a lower-case letter follows it.
func Kebab(name string) string {
	rs := []rune(name)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 {
				prev := rs[i-1]
				nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
				if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
					b.WriteByte('-')
				}
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// EnvName returns the environment variable for a key: max-connections →
// SWITCHBOARD_MAX_CONNECTIONS, limits.conn-msg-rate → SWITCHBOARD_LIMITS_CONN_MSG_RATE.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(key))
}

// Get returns the field's value in c.
func (f Field) Get(c *Node) any {
	return f.value(reflect.ValueOf(c).Elem()).Interface()
}

// Format returns the field's value in c as text that parse accepts: durations as "5s",
// integers in decimal.
func (f Field) Format(c *Node) string {
	return f.format(reflect.ValueOf(c).Elem())
}

// value returns the field in struct value sv.
func (f Field) value(sv reflect.Value) reflect.Value { return sv.FieldByIndex(f.index) }

func (f Field) format(sv reflect.Value) string {
	v := f.value(sv)
	switch f.kind {
	case kindString:
		return v.String()
	case kindBool:
		return strconv.FormatBool(v.Bool())
	case kindInt:
		return strconv.FormatInt(v.Int(), 10)
	case kindUint:
		return strconv.FormatUint(v.Uint(), 10)
	case kindDuration:
		return time.Duration(v.Int()).String()
	case kindFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, f.typ.Bits())
	}
	panic("BUG: config: unhandled kind")
}

// TypeName names the field's kind for help text: string, bool, int, uint, float or
// duration.
func (f Field) TypeName() string {
	switch f.kind {
	case kindString:
		return "string"
	case kindBool:
		return "bool"
	case kindInt:
		return "int"
	case kindUint:
		return "uint"
	case kindDuration:
		return "duration"
	case kindFloat:
		return "float"
	}
	return "value"
}

func (f Field) set(sv, v reflect.Value) { f.value(sv).Set(v) }

// parse converts text from an env var, a flag or a YAML scalar to a value of the field's
// type. Its error message says what was wanted and what was given.
func (f Field) parse(s string) (reflect.Value, error) {
	v := reflect.New(f.typ).Elem()
	if s == Off && f.ZeroMeansOff() {
		return v, nil // the zero value
	}
	switch f.kind {
	case kindString:
		v.SetString(s)
	case kindBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return v, fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case kindInt:
		bits := f.typ.Bits()
		n, err := strconv.ParseInt(s, 0, bits)
		if err != nil {
			return v, intError(s, err, fmt.Sprint(int64(-1)<<(bits-1)), fmt.Sprint(int64(math.MaxInt64>>(64-bits))))
		}
		v.SetInt(n)
	case kindUint:
		bits := f.typ.Bits()
		n, err := strconv.ParseUint(s, 0, bits)
		if err != nil {
			return v, intError(s, err, "0", fmt.Sprint(uint64(math.MaxUint64>>(64-bits))))
		}
		v.SetUint(n)
	case kindDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return v, fmt.Errorf(`want a duration such as "5s" or "1m30s", got %q`, s)
		}
		v.SetInt(int64(d))
	case kindFloat:
		x, err := strconv.ParseFloat(s, f.typ.Bits())
		if err != nil {
			return v, fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(x)
	}
	return v, nil
}

func intError(s string, err error, lo, hi string) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%s is out of range [%s, %s]", s, lo, hi)
	}
	return fmt.Errorf("want an integer, got %q", s)
}
