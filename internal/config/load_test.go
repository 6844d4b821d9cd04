package config

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/server"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "switchboard.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// load runs Load with a config file holding yaml (none if ""), env and command-line args.
func load(t *testing.T, yaml string, env []string, args ...string) (Loaded, error) {
	t.Helper()
	if yaml != "" {
		env = append([]string{"SWITCHBOARD_CONFIG=" + writeFile(t, yaml)}, env...)
	}
	fset := flag.NewFlagSet("test", flag.ContinueOnError)
	fl := RegisterFlags(fset)
	if err := fset.Parse(args); err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	return Load(env, fl)
}

func TestDefaults(t *testing.T) {
	l, err := load(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultNode(); l.Config != want {
		t.Errorf("Config = %+v; want DefaultConfig %+v", l.Config, want)
	}
	if l.Config.Listen != ":7400" || l.Config.Admin != "127.0.0.1:7401" {
		t.Errorf("listen, admin = %q, %q; want :7400, 127.0.0.1:7401", l.Config.Listen, l.Config.Admin)
	}
	for key, src := range l.Sources {
		if src != SourceDefault {
			t.Errorf("Sources[%q] = %q; want default", key, src)
		}
	}
	if got, want := len(l.Sources), len(Fields())+1; got != want {
		t.Errorf("len(Sources) = %d; want %d", got, want)
	}
	if l.File != "" || l.Profile != "balanced" {
		t.Errorf("File, Profile = %q, %q; want \"\", \"balanced\"", l.File, l.Profile)
	}
}

func TestPrecedence(t *testing.T) {
	const (
		file = "max-pending: 2000\nidle-timeout: 20s\nserver-id: from-file\ntcp-delay: true\nprofile: small\n"
		env  = "3000"
	)
	tests := []struct {
		name     string
		file     bool
		env      bool
		flag     bool
		want     int
		wantSrc  string
		wantIdle time.Duration
	}{
		{"default", false, false, false, server.DefaultMaxPending, SourceDefault, server.DefaultIdleTimeout},
		{"file", true, false, false, 2000, SourceFile, 20 * time.Second},
		{"env", false, true, false, 3000, SourceEnv, 30 * time.Second},
		{"flag", false, false, true, 4000, SourceFlag, 40 * time.Second},
		{"file<env", true, true, false, 3000, SourceEnv, 30 * time.Second},
		{"file<flag", true, false, true, 4000, SourceFlag, 40 * time.Second},
		{"env<flag", false, true, true, 4000, SourceFlag, 40 * time.Second},
		{"file<env<flag", true, true, true, 4000, SourceFlag, 40 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var yaml string
			var env, args []string
			if tt.file {
				yaml = file
			}
			if tt.env {
				env = []string{"SWITCHBOARD_MAX_PENDING=3000", "SWITCHBOARD_IDLE_TIMEOUT=30s", "SWITCHBOARD_PROFILE=latency"}
			}
			if tt.flag {
				args = []string{"--max-pending", "4000", "--idle-timeout=40s", "--profile", "throughput"}
			}
			l, err := load(t, yaml, env, args...)
			if err != nil {
				t.Fatal(err)
			}
			if l.Config.MaxPending != tt.want || l.Sources["max-pending"] != tt.wantSrc {
				t.Errorf("max-pending = %d from %s; want %d from %s", l.Config.MaxPending, l.Sources["max-pending"], tt.want, tt.wantSrc)
			}
			if l.Config.IdleTimeout != tt.wantIdle || l.Sources["idle-timeout"] != tt.wantSrc {
				t.Errorf("idle-timeout = %v from %s; want %v from %s", l.Config.IdleTimeout, l.Sources["idle-timeout"], tt.wantIdle, tt.wantSrc)
			}
			wantProfile := map[string]string{SourceDefault: "balanced", SourceFile: "small", SourceEnv: "latency", SourceFlag: "throughput"}[tt.wantSrc]
			if l.Profile != wantProfile || l.Sources[KeyProfile] != tt.wantSrc {
				t.Errorf("profile = %q from %s; want %q from %s", l.Profile, l.Sources[KeyProfile], wantProfile, tt.wantSrc)
			}
			if tt.file {
				if l.Config.ServerID != "from-file" || !l.Config.TCPDelay || l.Sources["tcp-delay"] != SourceFile {
					t.Errorf("server-id, tcp-delay = %q, %v (%s); want the file's", l.Config.ServerID, l.Config.TCPDelay, l.Sources["tcp-delay"])
				}
				if l.File == "" {
					t.Error("File is empty")
				}
			}
		})
	}
}

func TestConfigFlagOverridesEnv(t *testing.T) {
	envFile := writeFile(t, "max-pending: 1\n")
	flagFile := writeFile(t, "max-pending: 2\n")
	fset := flag.NewFlagSet("test", flag.ContinueOnError)
	fl := RegisterFlags(fset)
	if err := fset.Parse([]string{"--config", flagFile}); err != nil {
		t.Fatal(err)
	}
	l, err := Load([]string{"SWITCHBOARD_CONFIG=" + envFile}, fl)
	if err != nil {
		t.Fatal(err)
	}
	if l.File != flagFile || l.Config.MaxPending != 2 {
		t.Errorf("File, max-pending = %q, %d; want %q, 2", l.File, l.Config.MaxPending, flagFile)
	}
}

// TestKinds sets a field of every kind through each source.
func TestKinds(t *testing.T) {
	tests := []struct {
		key  string
		text string // for env and flag
		yaml string // the YAML value
		want any
	}{
		{"listen", "127.0.0.1:9000", `"127.0.0.1:9000"`, "127.0.0.1:9000"},
		{"admin", "off", "off", "off"}, // YAML 1.2: off is a string
		{"token", "1234", "1234", "1234"},
		{"loops", "4", "4", 4},
		{"max-frame", "0x10000", "0x10000", 65536},
		{"max-pending-bytes", "8_388_608", "8388608", 8 << 20},
		{"node-id", "65535", "65535", uint16(65535)},
		{"tcp-delay", "true", "true", true},
		{"handshake-timeout", "1m30s", "1m30s", 90 * time.Second},
		{"tick-interval", "250ms", `"250ms"`, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		f, ok := Lookup(tt.key)
		if !ok {
			t.Fatalf("no setting %q", tt.key)
		}
		check := func(t *testing.T, l Loaded, err error, src string) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Get(&l.Config); got != tt.want {
				t.Errorf("%s = %#v; want %#v", tt.key, got, tt.want)
			}
			if l.Sources[tt.key] != src {
				t.Errorf("source = %q; want %q", l.Sources[tt.key], src)
			}
		}
		t.Run(tt.key+"/file", func(t *testing.T) {
			l, err := load(t, tt.key+": "+tt.yaml+"\n", nil)
			check(t, l, err, SourceFile)
		})
		t.Run(tt.key+"/env", func(t *testing.T) {
			l, err := load(t, "", []string{f.Env + "=" + tt.text})
			check(t, l, err, SourceEnv)
		})
		t.Run(tt.key+"/flag", func(t *testing.T) {
			l, err := load(t, "", nil, "--"+tt.key+"="+tt.text)
			check(t, l, err, SourceFlag)
		})
	}
}

func TestBareBoolFlag(t *testing.T) {
	l, err := load(t, "tcp-delay: true\n", nil, "--tcp-delay=false", "--tcp-delay")
	if err != nil {
		t.Fatal(err)
	}
	if !l.Config.TCPDelay {
		t.Error("--tcp-delay did not set tcp-delay")
	}
	l, err = load(t, "tcp-delay: true\n", nil, "--tcp-delay=false")
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.TCPDelay || l.Sources["tcp-delay"] != SourceFlag {
		t.Errorf("tcp-delay = %v from %s; want false from flag", l.Config.TCPDelay, l.Sources["tcp-delay"])
	}
}

func TestEnv(t *testing.T) {
	env := []string{
		"PATH=/bin",
		"SWITCHBOARD_MAX_PENDING=7",
		"SWITCHBOARD_MAX_PENDING=8", // the first wins, as with os.Getenv
		"SWITCHBOARD_NO_SUCH_SETTING=1",
		"SWITCHBOARD_TOKEN=", // empty means unset
		"SWITCHBOARD_SERVER_ID=a=b",
		"MAX_PENDING=9",
		"garbage",
	}
	l, err := load(t, "token: from-file\n", env)
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.MaxPending != 7 {
		t.Errorf("max-pending = %d; want 7", l.Config.MaxPending)
	}
	if l.Config.Token != "from-file" || l.Sources["token"] != SourceFile {
		t.Errorf("token = %q from %s; want from-file from file", l.Config.Token, l.Sources["token"])
	}
	if l.Config.ServerID != "a=b" {
		t.Errorf("server-id = %q; want a=b", l.Config.ServerID)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		env   []string
		args  []string
		kind  error    // errors.Is target
		wants []string // substrings of the error
	}{
		{"unknown key", "max-conections: 5\n", nil, nil, ErrUnknownKey,
			[]string{`max-conections: unknown key (did you mean "max-connections"?)`, "switchboard.yaml:1"}},
		{"unknown key far from any", "colour: blue\n", nil, nil, ErrUnknownKey,
			[]string{"switchboard.yaml:1: colour: unknown key"}},
		{"bare integer duration", "idle-timeout: 30\n", nil, nil, ErrInvalidValue,
			[]string{"idle-timeout: want a duration with a unit", "bare number 30"}},
		{"bad duration text", "idle-timeout: soon\n", nil, nil, ErrInvalidValue,
			[]string{`idle-timeout: want a duration such as "5s" or "1m30s", got "soon"`}},
		{"string for int", "max-pending: lots\n", nil, nil, ErrInvalidValue,
			[]string{`max-pending: want an integer, got the string "lots"`}},
		{"quoted int", "max-pending: \"5\"\n", nil, nil, ErrInvalidValue,
			[]string{`max-pending: want an integer, got the string "5"`}},
		{"float for int", "max-frame: 1e6\n", nil, nil, ErrInvalidValue,
			[]string{"max-frame: want an integer, got the number 1e6"}},
		{"uint16 overflow", "node-id: 70000\n", nil, nil, ErrInvalidValue,
			[]string{"node-id: 70000 is out of range [0, 65535]"}},
		{"negative uint", "node-id: -1\n", nil, nil, ErrInvalidValue,
			[]string{"node-id: want an integer"}},
		{"string for bool", "tcp-delay: yes\n", nil, nil, ErrInvalidValue,
			[]string{`tcp-delay: want true or false, got the string "yes"`}},
		{"list", "listen: [a, b]\n", nil, nil, ErrInvalidValue,
			[]string{"listen: want a single value, got a list"}},
		{"null", "listen:\n", nil, nil, ErrInvalidValue,
			[]string{"listen: no value"}},
		{"duplicate", "loops: 1\nloops: 2\n", nil, nil, ErrInvalidValue,
			[]string{"switchboard.yaml:2: loops: set twice (first at line 1)"}},
		{"config in file", "config: other.yaml\n", nil, nil, ErrInvalidValue,
			[]string{"config: a config file cannot name another config file"}},
		{"not a mapping", "- a\n- b\n", nil, nil, ErrFile,
			[]string{"want a mapping"}},
		{"bad yaml", "a: [\n", nil, nil, ErrFile,
			[]string{"switchboard.yaml"}},
		{"two documents", "loops: 1\n---\nloops: 2\n", nil, nil, ErrFile,
			[]string{"want one YAML document"}},
		{"bad env", "", []string{"SWITCHBOARD_MAX_PENDING=many"}, nil, ErrInvalidValue,
			[]string{`config: SWITCHBOARD_MAX_PENDING: max-pending: want an integer, got "many"`}},
		{"bad env duration", "", []string{"SWITCHBOARD_IDLE_TIMEOUT=30"}, nil, ErrInvalidValue,
			[]string{`SWITCHBOARD_IDLE_TIMEOUT: idle-timeout: want a duration`}},
		{"bad flag", "", nil, []string{"--loops", "four"}, ErrInvalidValue,
			[]string{`config: --loops: want an integer, got "four"`}},
		{"bad flag bool", "", nil, []string{"--tcp-delay=maybe"}, ErrInvalidValue,
			[]string{`--tcp-delay: want true or false, got "maybe"`}},
		{"validate", "max-frame: 10\n", nil, nil, nil,
			[]string{"server: max-frame: must be between"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml, tt.env, tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("error %v; want errors.Is %v", err, tt.kind)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestEveryProblem checks that problems from every source and from Validate are all
// reported, and that a bad value leaves the lower-precedence one in place.
func TestEveryProblem(t *testing.T) {
	l, err := load(t, "loops: x\nbogus: 1\nring-size: 4194304\npending: 1\n",
		[]string{"SWITCHBOARD_NODE_ID=0x1_0000"}, "--idle-timeout", "5", "--max-pending=12")
	if err == nil {
		t.Fatal("no error")
	}
	var settings []*Error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if se, ok := errors.AsType[*Error](e); ok {
			settings = append(settings, se)
		}
	}
	var got []string
	for _, se := range settings {
		got = append(got, se.Source+":"+se.Key)
	}
	want := []string{"file:loops", "file:bogus", "file:pending", "env:node-id", "flag:idle-timeout"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems %q; want %q", got, want)
	}
	if !strings.Contains(err.Error(), "server: ring-size: at most") {
		t.Errorf("error %q; want Validate's ring-size problem too", err)
	}
	if l.Config.IdleTimeout != server.DefaultIdleTimeout || l.Config.NodeID != 1 || l.Config.MaxPending != 12 {
		t.Errorf("idle-timeout, node-id, max-pending = %v, %d, %d; want defaults and 12",
			l.Config.IdleTimeout, l.Config.NodeID, l.Config.MaxPending)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, ErrFile) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v; want ErrFile and fs.ErrNotExist", err)
	}
}

func TestEmptyFiles(t *testing.T) {
	for _, content := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		t.Run(content, func(t *testing.T) {
			l, err := LoadFile(writeFile(t, content))
			if err != nil {
				t.Fatal(err)
			}
			if l.Config != DefaultNode() {
				t.Errorf("Config = %+v; want defaults", l.Config)
			}
		})
	}
}

func TestLoadWithoutParsePanics(t *testing.T) {
	fl := RegisterFlags(flag.NewFlagSet("test", flag.ContinueOnError))
	defer func() {
		if recover() == nil {
			t.Error("Load before Parse did not panic")
		}
	}()
	_, _ = Load(nil, fl)
}

// TestWriteYAMLRoundTrip checks that --print-config output loads back to the same Config
// and names every source.
func TestWriteYAMLRoundTrip(t *testing.T) {
	l, err := load(t, "max-pending: 5\nserver-id: \"node: one # two\"\n",
		[]string{"SWITCHBOARD_LISTEN=127.0.0.1:0"}, "--idle-timeout=1m", "--tcp-delay", "--profile=small")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteYAML(&buf, l); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, w := range []string{"max-pending: 5", "# file", "# env", "# flag", "# default", "idle-timeout: 1m0s", "profile: small"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	back, err := LoadFile(writeFile(t, out))
	if err != nil {
		t.Fatalf("output does not load: %v\n%s", err, out)
	}
	if back.Config != l.Config || back.Profile != l.Profile {
		t.Errorf("round trip: got %+v %q; want %+v %q", back.Config, back.Profile, l.Config, l.Profile)
	}
}

func TestWriteYAMLRedactsSecrets(t *testing.T) {
	l, err := load(t, "", []string{"SWITCHBOARD_TOKEN=hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteYAML(&buf, l); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "hunter2") || !strings.Contains(buf.String(), Redacted) {
		t.Errorf("token not redacted:\n%s", buf.String())
	}
}

// TestExplicitZero checks that a 0 (or off) set anywhere survives with its source where 0
// means off, and is an error naming the setting where it means nothing.
func TestExplicitZero(t *testing.T) {
	l, err := load(t, "zone-hysteresis: off\ntcp-keep-alive: \"off\"\n",
		[]string{"SWITCHBOARD_CONN_MSG_RATE=off"}, "--idle-timeout=0", "--zone-min-dwell=0s")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		key, src string
	}{
		{"zone-hysteresis", SourceFile}, {"tcp-keep-alive", SourceFile}, {"conn-msg-rate", SourceEnv},
		{"idle-timeout", SourceFlag}, {"zone-min-dwell", SourceFlag},
	} {
		f, _ := Lookup(tt.key)
		if v := reflect.ValueOf(f.Get(&l.Config)); !v.IsZero() || l.Sources[tt.key] != tt.src {
			t.Errorf("%s = %v from %s; want 0 from %s", tt.key, v, l.Sources[tt.key], tt.src)
		}
	}
	var buf bytes.Buffer
	if err := WriteYAML(&buf, l); err != nil {
		t.Fatal(err)
	}
	if back, err := LoadFile(writeFile(t, buf.String())); err != nil || back.Config != l.Config {
		t.Errorf("print-config output does not load back to the same config: %v\n%s", err, buf.String())
	}

	_, err = load(t, "tick-interval: 0s\n", []string{"SWITCHBOARD_BREAKER_WINDOW=0s"}, "--max-frame=0", "--max-frame=0")
	for _, key := range []string{"tick-interval", "breaker-window", "max-frame"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v; want one naming %s", err, key)
		}
	}
	if _, err := load(t, "", nil, "--ring-size=off"); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("--ring-size=off: error %v; want ErrInvalidValue (0 is not off there)", err)
	}
}
