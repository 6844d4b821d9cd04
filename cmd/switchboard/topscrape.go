package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/server"
)

// metricSet is one scrape of /metrics: each series, keyed by its name and labels as the
// node wrote them (`switchboard_errors_total{code="NO_ROUTE"}`), and its value.
type metricSet map[string]float64

// parseMetrics reads the Prometheus text format: comment lines are skipped, every other
// line is a series, optional labels in braces, and a value (a timestamp after it is
// ignored).
func parseMetrics(r io.Reader) (metricSet, error) {
	m := metricSet{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, rest, ok := cutSeries(line)
		fields := strings.Fields(rest)
		if !ok || len(fields) == 0 {
			return nil, fmt.Errorf("line %d: not a series: %.60q", n, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: bad value %q", n, key, fields[0])
		}
		m[key] = v
	}
	return m, sc.Err()
}

// cutSeries splits a series line into the name with its labels and the rest. A label
// value may hold spaces, braces and escaped quotes.
func cutSeries(line string) (key, rest string, ok bool) {
	i := strings.IndexAny(line, "{ \t")
	if i < 0 {
		return "", "", false
	}
	if line[i] != '{' {
		return line[:i], line[i:], true
	}
	quoted := false
	for j := i + 1; j < len(line); j++ {
		switch c := line[j]; {
		case quoted && c == '\\':
			j++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return line[:j+1], line[j+1:], true
		}
	}
	return "", "", false
}

// get returns the series key, and whether it is there.
func (m metricSet) get(key string) (float64, bool) {
	v, ok := m[key]
	return v, ok
}

// sum adds every series of the metric name, whatever their labels; ok is false when
// there is none.
func (m metricSet) sum(name string) (total float64, ok bool) {
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			total += v
			ok = true
		}
	}
	return total, ok
}

// byLabel returns the value of each series of name by the value of its label.
func (m metricSet) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	prefix := name + "{" + label + `="`
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			if val, _, ok := strings.Cut(rest, `"`); ok {
				out[val] = v
			}
		}
	}
	return out
}

// sample is one scrape of one node's admin endpoints.
type sample struct {
	node    string    // the --admin address
	at      time.Time // when /metrics had been read; rates are taken between these
	metrics metricSet
	zone    server.ZoneReport
	err     error // the scrape failed; the fields above but node are unset
}

// scraper reads /metrics and /zone of a node.
type scraper struct {
	http  *http.Client
	token string // admin bearer token; "" sends none
}

// baseURL returns the URL of a node's admin endpoints: addr is host:port or a URL.
func baseURL(addr string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimRight(addr, "/")
	}
	return "http://" + addr
}

func (s scraper) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.80s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// scrape reads one node. The sample's time is taken when the metrics body has been read:
// the counters are at most that old.
func (s scraper) scrape(ctx context.Context, node string) sample {
	smp := sample{node: node}
	base := baseURL(node)
	body, err := s.get(ctx, base+"/metrics")
	if err != nil {
		smp.err = err
		return smp
	}
	smp.at = time.Now()
	if smp.metrics, err = parseMetrics(bytes.NewReader(body)); err != nil {
		smp.err = fmt.Errorf("%s/metrics: %w", base, err)
		return smp
	}
	zone, err := s.get(ctx, base+"/zone")
	if err == nil {
		err = json.Unmarshal(zone, &smp.zone)
	}
	if err != nil {
		smp.err = fmt.Errorf("%s/zone: %w", base, err)
	}
	return smp
}

// scrapeAll reads every node at once.
func (s scraper) scrapeAll(ctx context.Context, nodes []string) []sample {
	out := make([]sample, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { out[i] = s.scrape(ctx, n) })
	}
	wg.Wait()
	return out
}

// nodeView is one node's line of a refresh. Rates are per second over Window, the time
// between this scrape and the previous good one; a nil rate is unknown (no previous
// scrape, or a counter went backwards: the node restarted).
type nodeView struct {
	Node        string             `json:"node"`
	Time        time.Time          `json:"time"` // of the scrape
	Error       string             `json:"error,omitempty"`
	Zone        string             `json:"zone,omitempty"`
	TrafficZone string             `json:"traffic_zone,omitempty"`
	Worst       string             `json:"worst,omitempty"` // the zone input closest to its limit
	WorstValue  float64            `json:"worst_value"`
	Conns       int64              `json:"connections"`
	ConnsMax    int64              `json:"connections_max"`
	Headroom    int64              `json:"headroom"`
	FramesIn    float64            `json:"frames_in_total"`
	FramesOut   *float64           `json:"frames_out_total"` // nil: the node does not export it
	Routed      float64            `json:"routed_total"`     // messages sent + requests + responses
	Errors      float64            `json:"errors_total"`
	Window      float64            `json:"window_seconds"`
	InFPS       *float64           `json:"frames_in_per_second"`
	OutFPS      *float64           `json:"frames_out_per_second"`
	InBPS       *float64           `json:"bytes_in_per_second"`
	OutBPS      *float64           `json:"bytes_out_per_second"`
	RoutedPS    *float64           `json:"routed_per_second"`
	ErrorsPS    *float64           `json:"errors_per_second"`
	ErrorsByPS  map[string]float64 `json:"errors_per_second_by_code,omitempty"` // only codes seen in the window
	P99         *float64           `json:"p99_request_seconds"`                 // over the window; nil: no request ended
	Mem         int64              `json:"memory_bytes"`                        // Go runtime memory, as GOMEMLIMIT counts it
	MemLimit    int64              `json:"memory_limit_bytes"`                  // GOMEMLIMIT; 0: none
}

// framesOutMetric is the counter of frames sent, if a node exports it.
const framesOutMetric = "switchboard_frames_out_total"

// routedMetrics make up "routed": deliveries the node made for others.
var routedMetrics = []string{"switchboard_messages_sent_total", "switchboard_requests_total", "switchboard_responses_total"}

// view computes a node's line from its latest sample and the previous good one (prev.at
// zero: none).
func view(cur, prev sample) nodeView {
	v := nodeView{Node: cur.node, Time: cur.at}
	if cur.err != nil {
		v.Error = cur.err.Error()
		v.Time = time.Now()
		return v
	}
	m := cur.metrics
	conns, _ := m.get("switchboard_connections")
	connsMax, _ := m.get("switchboard_connections_max")
	v.Conns, v.ConnsMax = int64(conns), int64(connsMax)
	v.Headroom = max(0, v.ConnsMax-v.Conns)
	v.Zone, v.TrafficZone = cur.zone.Zone.String(), cur.zone.TrafficZone.String()
	v.Worst, v.WorstValue = cur.zone.Worst, cur.zone.WorstValue
	v.FramesIn, _ = m.sum("switchboard_frames_in_total")
	if out, ok := m.sum(framesOutMetric); ok {
		v.FramesOut = &out
	}
	for _, name := range routedMetrics {
		n, _ := m.get(name)
		v.Routed += n
	}
	v.Errors, _ = m.sum("switchboard_errors_total")
	sys, _ := m.get("go_memstats_sys_bytes")
	released, _ := m.get("go_memstats_heap_released_bytes")
	v.Mem = int64(sys - released)
	if limit, ok := m.get("go_memlimit_bytes"); ok && limit < math.MaxInt64 {
		v.MemLimit = int64(limit)
	}
	if prev.at.IsZero() || prev.err != nil {
		return v
	}
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		return v
	}
	v.Window = dt
	pm := prev.metrics
	rate := func(now float64, before float64, ok bool) *float64 {
		if !ok || now < before {
			return nil
		}
		r := (now - before) / dt
		return &r
	}
	prevIn, ok := pm.sum("switchboard_frames_in_total")
	v.InFPS = rate(v.FramesIn, prevIn, ok)
	if v.FramesOut != nil {
		before, ok := pm.sum(framesOutMetric)
		v.OutFPS = rate(*v.FramesOut, before, ok)
	}
	for _, k := range []struct {
		name string
		dst  **float64
	}{{"switchboard_bytes_in_total", &v.InBPS}, {"switchboard_bytes_out_total", &v.OutBPS}} {
		now, ok1 := m.get(k.name)
		before, ok2 := pm.get(k.name)
		*k.dst = rate(now, before, ok1 && ok2)
	}
	var prevRouted float64
	for _, name := range routedMetrics {
		n, _ := pm.get(name)
		prevRouted += n
	}
	v.RoutedPS = rate(v.Routed, prevRouted, true)
	prevErr, ok := pm.sum("switchboard_errors_total")
	if v.ErrorsPS = rate(v.Errors, prevErr, ok); v.ErrorsPS != nil {
		before := pm.byLabel("switchboard_errors_total", "code")
		for code, n := range m.byLabel("switchboard_errors_total", "code") {
			if d := n - before[code]; d > 0 {
				if v.ErrorsByPS == nil {
					v.ErrorsByPS = map[string]float64{}
				}
				v.ErrorsByPS[code] = d / dt
			}
		}
	}
	v.P99 = quantileDelta(0.99, m.byLabel("switchboard_request_duration_seconds_bucket", "le"),
		pm.byLabel("switchboard_request_duration_seconds_bucket", "le"))
	return v
}

// quantileDelta estimates quantile q of the observations made between two scrapes of a
// cumulative histogram (bucket upper bound → count), as Prometheus' histogram_quantile
// does: linear within the bucket, the highest finite bound for the +Inf bucket. It is nil
// when nothing was observed in between or a count went backwards.
func quantileDelta(q float64, now, before map[string]float64) *float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for le, n := range now {
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		d := n - before[le]
		if d < 0 {
			return nil
		}
		bs = append(bs, bucket{bound, d})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 || !math.IsInf(bs[len(bs)-1].le, 1) {
		return nil
	}
	rank := q * bs[len(bs)-1].n
	lower, lowerN := 0.0, 0.0
	for i, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				if i == 0 {
					return nil
				}
				r := bs[i-1].le
				return &r
			}
			r := lower + (b.le-lower)*(rank-lowerN)/max(b.n-lowerN, 1e-300)
			return &r
		}
		lower, lowerN = b.le, b.n
	}
	return nil
}

// zoneRank orders zones by severity for sorting; unknown (errors) first.
func zoneRank(v nodeView) int {
	if v.Error != "" {
		return 4
	}
	return slices.Index([]string{"GREEN", "YELLOW", "ORANGE", "RED"}, v.Zone)
}

// sortKeys are the orders --sort accepts, most important first.
var sortKeys = []string{"zone", "node", "conns", "in", "errors"}

// sortViews orders vs by key; ties go by node address.
func sortViews(vs []nodeView, key string) {
	val := func(p *float64) float64 {
		if p == nil {
			return -1
		}
		return *p
	}
	sort.SliceStable(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		var less, more bool
		switch key {
		case "zone":
			less, more = zoneRank(a) > zoneRank(b), zoneRank(a) < zoneRank(b)
			if !less && !more {
				less, more = val(a.InFPS) > val(b.InFPS), val(a.InFPS) < val(b.InFPS)
			}
		case "conns":
			less, more = a.Conns > b.Conns, a.Conns < b.Conns
		case "in":
			less, more = val(a.InFPS) > val(b.InFPS), val(a.InFPS) < val(b.InFPS)
		case "errors":
			less, more = val(a.ErrorsPS) > val(b.ErrorsPS), val(a.ErrorsPS) < val(b.ErrorsPS)
		}
		if less || more {
			return less
		}
		return a.Node < b.Node
	})
}
