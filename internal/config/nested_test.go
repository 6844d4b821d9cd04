package config

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// nestedConfig has what server.Config may grow: a section, a float, an embedded struct.
type nestedConfig struct {
	Name string
	Limits
	Zone struct {
		Red    float64
		Dwell  time.Duration
		Deeper struct{ Level int8 }
	}
	After bool
}

// Limits is embedded: its fields are top-level settings.
type Limits struct {
	ConnMsgRate int
}

func TestNestedFields(t *testing.T) {
	var got []string
	for _, f := range fieldsOf(reflect.TypeFor[nestedConfig]()) {
		got = append(got, f.Key+" "+f.Env+" "+f.TypeName())
	}
	want := []string{
		"name SWITCHBOARD_NAME string",
		"conn-msg-rate SWITCHBOARD_CONN_MSG_RATE int",
		"zone.red SWITCHBOARD_ZONE_RED float",
		"zone.dwell SWITCHBOARD_ZONE_DWELL duration",
		"zone.deeper.level SWITCHBOARD_ZONE_DEEPER_LEVEL int",
		"after SWITCHBOARD_AFTER bool",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fields:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestUnsupportedKindPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for a []string field")
		}
	}()
	fieldsOf(reflect.TypeFor[struct{ Peers []string }]())
}

func TestNestedLoad(t *testing.T) {
	var c nestedConfig
	ld := newLoader(&c)
	ld.file(writeFile(t, "name: n\nconn-msg-rate: 5\nzone:\n  red: 0.9\n  dwell: 2s\n  deeper:\n    level: 3\n  redd: 1\nafter: true\n"))
	ld.env(parseEnv([]string{"SWITCHBOARD_ZONE_DWELL=3s"}))
	err := errors.Join(ld.errs...)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), `:8: zone.redd: unknown key (did you mean "zone.red"?)`) {
		t.Errorf("error %v; want zone.redd unknown at line 8", err)
	}
	want := nestedConfig{Name: "n", Limits: Limits{ConnMsgRate: 5}, After: true}
	want.Zone.Red, want.Zone.Dwell, want.Zone.Deeper.Level = 0.9, 3*time.Second, 3
	if c != want {
		t.Errorf("got %+v; want %+v", c, want)
	}
	if ld.sources["zone.dwell"] != SourceEnv || ld.sources["zone.deeper.level"] != SourceFile {
		t.Errorf("sources %v", ld.sources)
	}

	// A section given a scalar is an error naming the section.
	ld = newLoader(&nestedConfig{})
	ld.file(writeFile(t, "zone: 1\n"))
	if err := errors.Join(ld.errs...); err == nil || !strings.Contains(err.Error(), "zone: want a mapping of zone settings") {
		t.Errorf("error %v; want zone: want a mapping", err)
	}

	// writeYAML nests sections and its output loads back.
	var buf bytes.Buffer
	if err := writeYAML(&buf, fieldsOf(reflect.TypeFor[nestedConfig]()), reflect.ValueOf(&c).Elem(), Loaded{Sources: ld.sources}); err != nil {
		t.Fatal(err)
	}
	var back nestedConfig
	ld = newLoader(&back)
	ld.file(writeFile(t, buf.String()))
	if err := errors.Join(ld.errs...); err != nil || back != c {
		t.Errorf("round trip: %+v, %v; want %+v\n%s", back, err, c, buf.String())
	}
	if !strings.Contains(buf.String(), "zone:\n  red: 0.9") || !strings.Contains(buf.String(), "\n  deeper:\n    level: 3") {
		t.Errorf("not nested:\n%s", buf.String())
	}
}

func TestFloat(t *testing.T) {
	f := Field{typ: reflect.TypeFor[float64](), kind: kindFloat}
	for _, tt := range []struct {
		in   string
		want float64
		ok   bool
	}{{"0.5", 0.5, true}, {"1", 1, true}, {"1e-3", 0.001, true}, {"half", 0, false}} {
		v, err := f.parse(tt.in)
		if (err == nil) != tt.ok || (tt.ok && v.Float() != tt.want) {
			t.Errorf("parse(%q) = %v, %v; want %v, ok %v", tt.in, v, err, tt.want, tt.ok)
		}
	}
}
