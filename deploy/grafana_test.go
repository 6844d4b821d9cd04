package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dashboardFile = "grafana/switchboard.json"

// dashboard is the part of a Grafana dashboard JSON model the tests read.
type dashboard struct {
	Title      string           `json:"title"`
	UID        string           `json:"uid"`
	Panels     []dashboardPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
			Query      any    `json:"query"` // a string, or {"query": "..."} for a query variable
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

type dashboardPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []panelTarget    `json:"targets"`
	Panels     []dashboardPanel `json:"panels"` // a row's collapsed panels
}

type panelTarget struct {
	Expr       string         `json:"expr"`
	Datasource *datasourceRef `json:"datasource"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []dashboardPanel) []dashboardPanel {
	var out []dashboardPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// promQL is one expression of the dashboard and where it is.
type promQL struct{ where, expr string }

// dashboardExprs returns every PromQL expression of the dashboard: panel targets, query
// variables (label_values(...)) and annotations.
func dashboardExprs(d dashboard) []promQL {
	var out []promQL
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out = append(out, promQL{"panel " + p.Title, tg.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		out = append(out, promQL{"variable " + v.Name, v.Definition})
		switch q := v.Query.(type) {
		case string:
			out = append(out, promQL{"variable " + v.Name, q})
		case map[string]any:
			if s, ok := q["query"].(string); ok {
				out = append(out, promQL{"variable " + v.Name, s})
			}
		}
	}
	for _, a := range d.Annotations.List {
		out = append(out, promQL{"annotation " + a.Name, a.Expr})
	}
	return out
}

// targetLabels are attached by Prometheus when it scrapes, so a node's own output does not
// have them.
var targetLabels = map[string]bool{"instance": true, "job": true}

// byClause finds the labels of by (...) and the label argument of label_values(m, label).
var (
	byClause     = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	labelValues  = regexp.MustCompile(`label_values\(\s*[a-zA-Z_:][a-zA-Z0-9_:]*\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
	templateVars = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// TestDashboardMetricsExist extracts every metric name from the dashboard's PromQL and
// fails if a real node's scrape (a server started by the test) does not export it, if a
// label matcher names a label (or, for =, a value) no series of that metric has, or if an
// aggregation groups by a label none of the expression's metrics has.
func TestDashboardMetricsExist(t *testing.T) {
	d := loadDashboard(t)
	scraped := scrape(t)
	byName := map[string][]series{}
	for _, s := range scraped {
		byName[s.name] = append(byName[s.name], s)
	}
	hasLabel := func(name, label string) bool {
		return slices.ContainsFunc(byName[name], func(s series) bool { _, ok := s.labels[label]; return ok })
	}
	exprs := dashboardExprs(d)
	if len(exprs) == 0 {
		t.Fatal("no PromQL in " + dashboardFile)
	}
	seen := map[string]bool{}
	for _, q := range exprs {
		if strings.TrimSpace(q.expr) == "" {
			t.Errorf("%s: empty expression", q.where)
			continue
		}
		refs := metricRef.FindAllStringSubmatch(q.expr, -1)
		if len(refs) == 0 {
			t.Errorf("%s: no switchboard_, process_ or go_ metric in %q", q.where, q.expr)
		}
		var names []string
		for _, ref := range refs {
			name, sel := ref[1], ref[2]
			names = append(names, name)
			seen[name] = true
			ss, ok := byName[name]
			if !ok {
				t.Errorf("%s uses %s, which the server does not expose", q.where, name)
				continue
			}
			for _, m := range matcher.FindAllStringSubmatch(sel, -1) {
				label, op, value := m[1], m[2], m[3]
				if targetLabels[label] {
					continue
				}
				found := slices.ContainsFunc(ss, func(s series) bool {
					v, has := s.labels[label]
					return has && (op != "=" || v == value)
				})
				if !found {
					t.Errorf("%s: no %s series with label %s%s%q", q.where, name, label, op, value)
				}
			}
		}
		var grouped []string
		for _, m := range byClause.FindAllStringSubmatch(q.expr, -1) {
			grouped = append(grouped, strings.Split(m[1], ",")...)
		}
		for _, m := range labelValues.FindAllStringSubmatch(q.expr, -1) {
			grouped = append(grouped, m[1])
		}
		for _, l := range grouped {
			l = strings.TrimSpace(l)
			if l == "" || targetLabels[l] {
				continue
			}
			if !slices.ContainsFunc(names, func(n string) bool { return hasLabel(n, l) }) {
				t.Errorf("%s: groups by %q, which none of %v has", q.where, l, names)
			}
		}
	}
	t.Logf("%d expressions use %d metrics", len(exprs), len(seen))
}

// TestDashboardPanels checks that the panels operators look at first are there, that every
// panel queries the dashboard's data source variable, that ids are unique and panels fit
// the 24-column grid, and that every $variable used is defined.
func TestDashboardPanels(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q; want both", d.UID, d.Title)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] || !vars["instance"] {
		t.Errorf("want template variables datasource and instance; have %v", vars)
	}
	titles := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		titles[p.Title] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos x %d w %d does not fit 24 columns", p.Title, p.GridPos.X, p.GridPos.W)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v; want the ${datasource} variable", p.Title, p.Datasource)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a query's datasource %+v; want the ${datasource} variable", p.Title, tg.Datasource)
			}
		}
	}
	for _, q := range dashboardExprs(d) {
		for _, m := range templateVars.FindAllStringSubmatch(q.expr, -1) {
			if !vars[m[1]] {
				t.Errorf("%s: $%s is not a template variable", q.where, m[1])
			}
		}
	}
	for _, want := range []string{
		"Connections vs capacity", "Zone per node", "Frames in per second by type", "Errors by code",
		"Request latency quantiles", "Memory vs GOMEMLIMIT", "GC", "Slow consumers", "Connection refusals by reason",
		"Cluster nodes and directory state", "Cross-node records per second",
	} {
		if !titles[want] {
			t.Errorf("no panel %q", want)
		}
	}
}
