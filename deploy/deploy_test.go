package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/cluster"
	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/server"
	"github.com/switchboard/switchboard/tuning"
	"go.yaml.in/yaml/v3"
)

const (
	alertsFile     = "prometheus/alerts.yml"
	alertsTestFile = "prometheus/alerts_test.yml"
	unitFile       = "switchboard.service"
	envFile        = "switchboard.env"
	sysctlFile     = "sysctl.d/90-switchboard.conf"
	runbooksFile   = "../docs/RUNBOOKS.md"
)

// inCI reports whether the CI variable says this is a CI run.
func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "0" && v != "false"
}

// promtool returns promtool's path. Without it the test is skipped, except in CI, where
// it fails: CI must install it (scripts/ci-deps.sh).
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err == nil {
		return path
	}
	const how = "promtool is in the Debian package prometheus: run scripts/ci-deps.sh (apt-get install --no-install-recommends prometheus)"
	if inCI() {
		t.Fatalf("promtool not found on PATH and CI is set: CI must install it. %s", how)
	}
	t.Skipf("promtool not found on PATH; skipping the Prometheus rule checks. %s", how)
	return ""
}

func TestPromtoolCheckRules(t *testing.T) {
	runPromtool(t, promtool(t), "check", "rules", alertsFile)
}

func TestPromtoolTestRules(t *testing.T) {
	runPromtool(t, promtool(t), "test", "rules", alertsTestFile)
}

// TestPromtoolCheckMetrics scrapes a real node's /metrics over HTTP, after a client's
// handshake and a few frames, and requires `promtool check metrics` to find no problem:
// every family, switchboard's (the cluster's included: the node is a one-node cluster)
// and the Go runtime's and process's, has HELP and TYPE.
func TestPromtoolCheckMetrics(t *testing.T) {
	bin := promtool(t)
	srv := clusterServer(t)
	p := rawpeer.Dial(t, srv.Addr().String())
	p.Hello("scraped", "")
	p.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 1, []byte("x")))
	p.Expect(codec.TypeEchoReply)
	admin := httptest.NewServer(srv.AdminHandler())
	defer admin.Close()
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v; %d problems:\n%s", err, bytes.Count(out, []byte("\n")), out)
	}
}

func runPromtool(t *testing.T, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// rule is one alerting rule of alerts.yml.
type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var rules []rule
	for _, g := range doc.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatal("no rules in " + alertsFile)
	}
	return rules
}

// clusterServer starts a server wired to a one-node embedded cluster (the wiring of
// `serve --cluster embedded`), both on loopback ports of their own choosing, and stops
// both when the test ends.
func clusterServer(t *testing.T) *server.Server {
	t.Helper()
	cc := cluster.DefaultConfig()
	cc.Mode, cc.NodeID, cc.Name, cc.Replicas = cluster.ModeEmbedded, 1, "deploy", 1
	cc.Listen, cc.StoreDir = "127.0.0.1:0", t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cn, err := cluster.Start(ctx, cc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cn.Close(ctx); err != nil {
			t.Errorf("cluster Close: %v", err)
		}
	})
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.NodeID = "127.0.0.1:0", 1
	srv, err := server.New(cfg, server.WithLogger(slog.New(slog.DiscardHandler)),
		server.WithDirectory(cn.Directory()), server.WithRemote(cn.Forwarder()))
	if err != nil {
		t.Fatal(err)
	}
	cn.Forwarder().SetHandler(func(rec []byte) { srv.DeliverRemote(rec) })
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // runs before the cluster's Close
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return srv
}

// series is one sample line of a scrape: name and labels.
type series struct {
	name   string
	labels map[string]string
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape starts a real server on loopback and returns the series of one WritePrometheus.
// The server is a cluster node (a one-node embedded cluster), so that the scrape has the
// switchboard_cluster_* families as well as everything a single node writes.
func scrape(t *testing.T) []series {
	t.Helper()
	var buf bytes.Buffer
	clusterServer(t).WritePrometheus(&buf)
	var out []series
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsable scrape line %q", line)
		}
		s := series{name: m[1], labels: map[string]string{}}
		for _, lp := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[lp[1]] = lp[2]
		}
		out = append(out, s)
	}
	return out
}

var (
	// metricRef finds metric names in PromQL: every metric switchboard exposes starts with
	// one of these prefixes, and no PromQL function or keyword does.
	metricRef = regexp.MustCompile(`\b((?:switchboard|process|go)_[a-zA-Z0-9_:]*)(\{[^}]*\})?`)
	matcher   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
)

// TestAlertMetricsExist checks that every metric an alert uses is in a real server's
// scrape, and that every label an equality matcher names has that value on some series,
// so that an alert cannot watch a metric that does not exist.
func TestAlertMetricsExist(t *testing.T) {
	scraped := scrape(t)
	byName := map[string][]series{}
	for _, s := range scraped {
		byName[s.name] = append(byName[s.name], s)
	}
	for _, r := range loadRules(t) {
		refs := metricRef.FindAllStringSubmatch(r.Expr, -1)
		if len(refs) == 0 {
			t.Errorf("%s: no switchboard_, process_ or go_ metric in %q", r.Alert, r.Expr)
		}
		for _, ref := range refs {
			name, sel := ref[1], ref[2]
			ss, ok := byName[name]
			if !ok {
				t.Errorf("%s uses %s, which the server does not expose", r.Alert, name)
				continue
			}
			for _, m := range matcher.FindAllStringSubmatch(sel, -1) {
				label, op, value := m[1], m[2], m[3]
				found := slices.ContainsFunc(ss, func(s series) bool {
					v, has := s.labels[label]
					return has && (op != "=" || v == value)
				})
				if !found {
					t.Errorf("%s: no %s series with label %s%s%q", r.Alert, name, label, op, value)
				}
			}
		}
	}
}

// TestAlertsAreDocumented checks each alert's labels and annotations, that its
// runbook_url points at a heading of docs/RUNBOOKS.md, and that alerts_test.yml has a
// firing and a quiet case for it.
func TestAlertsAreDocumented(t *testing.T) {
	runbook, err := os.ReadFile(runbooksFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(runbook), "\n") {
		if strings.HasPrefix(line, "#") {
			anchors[slug(strings.TrimLeft(line, "# "))] = true
		}
	}
	fires, quiet := alertTestCases(t)
	const prefix = "https://github.com/switchboard/switchboard/blob/main/docs/RUNBOOKS.md#"
	seen := map[string]bool{}
	for _, r := range loadRules(t) {
		if seen[r.Alert] {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if sev := r.Labels["severity"]; sev != "info" && sev != "warning" && sev != "critical" {
			t.Errorf("%s: severity %q; want info, warning or critical", r.Alert, sev)
		}
		if r.For == "" {
			t.Errorf("%s: no for: a single bad scrape would page", r.Alert)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[a] == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		url := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(url, prefix)
		if !ok || !anchors[anchor] {
			t.Errorf("%s: runbook_url %q is not %s<heading of %s>", r.Alert, url, prefix, runbooksFile)
		}
		if anchor != strings.ToLower(r.Alert) {
			t.Errorf("%s: runbook anchor %q; want the alert's own section %q", r.Alert, anchor, strings.ToLower(r.Alert))
		}
		if !fires[r.Alert] || !quiet[r.Alert] {
			t.Errorf("%s: alerts_test.yml has firing case %v, quiet case %v; want both", r.Alert, fires[r.Alert], quiet[r.Alert])
		}
	}
}

// slug is GitHub's anchor for a Markdown heading: lower case, spaces to hyphens,
// punctuation other than - and _ dropped.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// alertTestCases returns, by alert name, whether alerts_test.yml expects it to fire in
// some case and to stay quiet in some case.
func alertTestCases(t *testing.T) (fires, quiet map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	fires, quiet = map[string]bool{}, map[string]bool{}
	for _, tc := range doc.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	return fires, quiet
}

// unitSettings returns the unit file's Key=Value lines; repeated keys keep every value.
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: line %q is not Key=Value", unitFile, line)
			continue
		}
		kv[k] = append(kv[k], v)
	}
	return kv
}

// shutdownTimeout mirrors cmd/switchboard's bound on the shutdown after a drain.
const shutdownTimeout = 15 * time.Second

func TestSystemdUnit(t *testing.T) {
	kv := unitSettings(t)
	want := map[string]string{
		"LimitNOFILE":           "1048576",
		"EnvironmentFile":       "/etc/switchboard/switchboard.env",
		"KillSignal":            "SIGTERM",
		"Restart":               "on-failure",
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"ProtectHome":           "yes",
		"PrivateTmp":            "yes",
		"DynamicUser":           "yes",
		"CapabilityBoundingSet": "",
	}
	for k, v := range want {
		if got := kv[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q; want %q", k, got, v)
		}
	}
	if exec := kv["ExecStart"]; len(exec) != 1 || !strings.Contains(exec[0], "switchboard serve") {
		t.Errorf("ExecStart = %q; want one switchboard serve", exec)
	}
	// The README promises that systemctl reload re-reads the configuration: serve does
	// that on SIGHUP, and systemd sends nothing on reload without ExecReload.
	if r := kv["ExecReload"]; len(r) != 1 || r[0] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload = %q; want /bin/kill -HUP $MAINPID", r)
	}
	stop := kv["TimeoutStopSec"]
	if len(stop) != 1 {
		t.Fatalf("TimeoutStopSec = %q; want one value", stop)
	}
	d, err := time.ParseDuration(stop[0])
	if err != nil {
		t.Fatalf("TimeoutStopSec %q: %v", stop[0], err)
	}
	if min := config.DefaultDrainPeriod + shutdownTimeout; d <= min {
		t.Errorf("TimeoutStopSec %v; want more than the drain period plus shutdown, %v", d, min)
	}
	// The unit's limit is what tune check recommends for 100K connections.
	if n := tuning.RecommendedNoFile(100_000); fmt.Sprint(n) != kv["LimitNOFILE"][0] {
		t.Errorf("LimitNOFILE %s; tune check recommends %d", kv["LimitNOFILE"][0], n)
	}
}

func TestEnvFile(t *testing.T) {
	data, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{config.EnvName(config.KeyProfile): true, config.EnvName(config.KeyConfig): true,
		"GOGC": true, "GOMEMLIMIT": true, "GOMAXPROCS": true}
	for _, f := range config.Fields() {
		known[f.Env] = true
	}
	assign := regexp.MustCompile(`^#?([A-Z][A-Z0-9_]*)=(.*)$`)
	n := 0
	for i, line := range strings.Split(string(data), "\n") {
		m := assign.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n++
		if !known[m[1]] {
			t.Errorf("%s:%d: %s is not a setting", envFile, i+1, m[1])
		}
		if m[1] == config.EnvName(config.KeyProfile) {
			if _, ok := tuning.Lookup(m[2]); !ok {
				t.Errorf("%s:%d: unknown profile %q", envFile, i+1, m[2])
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s sets nothing", envFile)
	}
	// The uncommented settings load.
	var env []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, config.EnvPrefix) {
			env = append(env, line)
		}
	}
	if _, err := config.Load(env, nil); err != nil {
		t.Errorf("%s does not load: %v", envFile, err)
	}
}

// TestSysctlFile checks a comment above every setting and that the file, with the unit's
// LimitNOFILE, satisfies tune check for 100K connections.
func TestSysctlFile(t *testing.T) {
	data, err := os.ReadFile(sysctlFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	vals := map[string]string{}
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s:%d: %q is not key = value", sysctlFile, i+1, line)
			continue
		}
		if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			t.Errorf("%s:%d: %s has no comment above it", sysctlFile, i+1, k)
		}
		vals[strings.TrimPrefix(strings.TrimSpace(k), "-")] = strings.TrimSpace(v)
	}
	num := func(key string, field int) int64 {
		f := strings.Fields(vals[key])
		if len(f) <= field {
			t.Errorf("%s: no %s", sysctlFile, key)
			return tuning.Unknown
		}
		n, err := strconv.ParseInt(f[field], 10, 64)
		if err != nil {
			t.Errorf("%s: %s: %v", sysctlFile, key, err)
		}
		return n
	}
	nofile, _ := strconv.ParseInt(unitSettings(t)["LimitNOFILE"][0], 10, 64)
	r := tuning.HostReadings{
		NoFileSoft: nofile, NoFileHard: nofile,
		FileMax: num("fs.file-max", 0), NrOpen: num("fs.nr_open", 0),
		Somaxconn: num("net.core.somaxconn", 0), SynBacklog: num("net.ipv4.tcp_max_syn_backlog", 0),
		PortLow: num("net.ipv4.ip_local_port_range", 0), PortHigh: num("net.ipv4.ip_local_port_range", 1),
		TwReuse:  num("net.ipv4.tcp_tw_reuse", 0),
		MemTotal: 8 << 30, CgroupMemMax: tuning.Unknown, GOMAXPROCS: 4, NumCPU: 4,
	}
	small, _ := tuning.Lookup("small")
	findings := small.Check(100_000, r)
	for _, f := range findings {
		if f.Severity != tuning.OK {
			t.Errorf("with the deploy files, tune check says %s %s: %s; %s", f.Severity, f.Check, f.Read, f.Change)
		}
	}
	if s := tuning.SysctlSnippet(100_000, findings); !strings.Contains(s, "nothing to change") {
		t.Errorf("tune check would still suggest:\n%s", s)
	}
}

// TestCIDepsScript checks that scripts/ci-deps.sh is executable, so that .ci/run runs it.
func TestCIDepsScript(t *testing.T) {
	fi, err := os.Stat(filepath.Join("..", "scripts", "ci-deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("scripts/ci-deps.sh mode %v; want executable", fi.Mode())
	}
	data, _ := os.ReadFile(filepath.Join("..", "scripts", "ci-deps.sh"))
	for _, w := range []string{"promtool", "apt-get update", "DEBIAN_FRONTEND=noninteractive", "--no-install-recommends", "prometheus", "need+=(haproxy)"} {
		if !bytes.Contains(data, []byte(w)) {
			t.Errorf("scripts/ci-deps.sh lacks %q", w)
		}
	}
}

// TestTuningDocMatchesProfiles checks that docs/TUNING.md lists, in each profile's
// section, every server setting the profile makes with its value.
func TestTuningDocMatchesProfiles(t *testing.T) {
	data, err := os.ReadFile("../docs/TUNING.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, p := range tuning.Profiles() {
		start := strings.Index(doc, "\n### "+p.Name+"\n")
		if start < 0 {
			t.Errorf("docs/TUNING.md has no section ### %s", p.Name)
			continue
		}
		section := doc[start+1:]
		if end := strings.Index(section[4:], "\n#"); end >= 0 {
			section = section[:end+4]
		}
		for _, f := range config.Fields() {
			if v, set := p.Settings[f.Key]; set && !strings.Contains(section, "| `"+f.Key+"` | "+v+" |") {
				t.Errorf("docs/TUNING.md, ### %s: no row \"| `%s` | %s |\"", p.Name, f.Key, v)
			}
		}
		for _, want := range []string{fmt.Sprint(p.GOGC), strings.TrimSuffix(tuning.FormatBytes(p.GOMEMLIMIT), "MiB") + " MiB"} {
			if !strings.Contains(section, want) {
				t.Errorf("docs/TUNING.md, ### %s: does not mention %q", p.Name, want)
			}
		}
	}
}
