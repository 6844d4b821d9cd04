package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Result is the JSON object `switchboard bench --json` writes. Field names are a contract
// with outside tools (issue 3); new fields may be added, none renamed.
type Result struct {
	Scenario    string          `json:"scenario"`
	StartedAt   time.Time       `json:"started_at"`
	DurationS   float64         `json:"duration_s"` // the measured phase
	Config      map[string]any  `json:"config"`     // every flag's effective value
	Connections ConnStats       `json:"connections"`
	Messages    MsgStats        `json:"messages"`
	Throughput  float64         `json:"throughput_msgs_per_s"`
	LatencyUs   LatencyStats    `json:"latency_us"`
	Server      ServerStats     `json:"server"`
	LoadGen     LoadGenStats    `json:"load_generator"`
	Machine     *MachineStats   `json:"machine,omitempty"` // the whole machine over the same window
	Floor       FloorStats      `json:"floor"`
	Connect     *ConnectStats   `json:"connect,omitempty"`
	Ports       *PortCheck      `json:"ports,omitempty"` // the pre-run port check
	Overload    *probeResult    `json:"overload,omitempty"`
	Reconnect   *ReconnectStats `json:"reconnect,omitempty"` // connect --reconnect
	Series      []Point         `json:"series"`              // one point per second of the measured phase
	Failed      string          `json:"failed,omitempty"`
}

// ConnStats counts the connections of a run.
type ConnStats struct {
	Target        int            `json:"target"`
	Established   int            `json:"established"`
	Refused       int            `json:"refused"`
	RefusedByCode map[string]int `json:"refused_by_code"`
	Failed        int            `json:"failed"`
	// FailedByCause counts the failed connections by "PHASE CAUSE": phase dial or
	// handshake, cause a system error (EADDRNOTAVAIL, EADDRINUSE, ECONNREFUSED, EMFILE...),
	// timeout, EOF or other; "not attempted (connecting phase over)" counts the
	// connections never dialled because the connecting phase ran out of time.
	FailedByCause map[string]int `json:"failed_by_cause"`
}

// MsgStats counts messages. Lost = sent − received − errors answering a message −
// unanswered (never negative). ErrorsByCode counts every ERROR, those with corr 0 (about a
// connection, such as the SLOW_CONSUMER that closes it) included.
type MsgStats struct {
	Sent         uint64            `json:"sent"`
	Received     uint64            `json:"received"`
	ErrorsByCode map[string]uint64 `json:"errors_by_code"`
	// Unanswered counts messages written on connections the server then closed (a closing
	// ERROR, GOAWAY) before it answered them: not lost, never processed (a slow consumer's
	// input is ignored from the decision on, docs/LIMITS.md).
	Unanswered uint64 `json:"unanswered"`
	Lost       uint64 `json:"lost"`
}

// LatencyStats are percentiles in microseconds.
type LatencyStats struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// ServerStats are the server process's figures; Source says where they came from
// ("proc:PID", "admin:URL" or "none").
type ServerStats struct {
	RSSBefore  uint64  `json:"rss_bytes_before"`
	RSSAfter   uint64  `json:"rss_bytes_after"`
	RSSPeak    uint64  `json:"rss_bytes_peak"`
	RSSPerConn float64 `json:"rss_per_conn_bytes"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPerMsgUs is CPUSeconds per message received, in µs (0 without messages).
	CPUPerMsgUs float64 `json:"cpu_per_msg_us"`
	Source      string  `json:"source"`
	Error       string  `json:"error,omitempty"`
}

// LoadGenStats is the CPU the load generator itself used over the same window as the
// server's figures (this process and its --procs workers). On one machine the load
// generator and the server share the cores: a scenario that costs the generator more per
// message leaves the server less, so compare scenarios with both figures in view.
type LoadGenStats struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUPerMsgUs float64 `json:"cpu_per_msg_us"` // per message received, µs
}

// FloorStats compares with the bare gnet echo server (zero unless --floor).
type FloorStats struct {
	Throughput float64 `json:"throughput_msgs_per_s"`
	Ratio      float64 `json:"ratio"` // switchboard / floor
	// LatencyUs is the floor's latency under the same load: with an open-loop --rate it
	// tells how much of switchboard's latency the machine and load generator account for.
	LatencyUs *LatencyStats `json:"latency_us,omitempty"`
}

// ConnectStats are the connect scenario's extras.
type ConnectStats struct {
	ConnectS     float64 `json:"connect_s"`         // first dial to last handshake
	AcceptRate   float64 `json:"accept_rate_per_s"` // established / connect_s
	FirstFailure string  `json:"first_failure,omitempty"`
	// RampTarget is --ramp, the rate asked for in connections/s (0: as fast as possible).
	RampTarget float64 `json:"ramp_target_per_s"`
	// PeakRate is the most connections established in one second of Ramp.
	PeakRate float64 `json:"peak_rate_per_s"`
	// Ramp is the achieved rate over time: one point per second since the pass started,
	// up to the last connection's outcome.
	Ramp []RampPoint `json:"ramp"`
}

// Point is one second of the run.
type Point struct {
	Sec        int     `json:"sec"`
	Throughput float64 `json:"msgs_per_s"`
	P50Us      float64 `json:"p50_us"`
	P99Us      float64 `json:"p99_us"`
}

func latencyOf(h *Histogram) LatencyStats {
	return LatencyStats{P50: us(h.Percentile(50)), P90: us(h.Percentile(90)), P95: us(h.Percentile(95)),
		P99: us(h.Percentile(99)), P999: us(h.Percentile(99.9)), Max: us(h.Max())}
}

// WriteSummary prints the human summary.
func (r *Result) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "switchboard bench %s: %.1fs measured, started %s\n", r.Scenario, r.DurationS, r.StartedAt.Format(time.RFC3339))
	c := r.Connections
	fmt.Fprintf(w, "  connections  target %d, established %d, refused %d%s, failed %d\n",
		c.Target, c.Established, c.Refused, byCode(c.RefusedByCode), c.Failed)
	writeCauses(w, "  ", c.FailedByCause)
	if r.Connect != nil {
		target := "as fast as possible"
		if r.Connect.RampTarget > 0 {
			target = fmt.Sprintf("--ramp %.0f/s", r.Connect.RampTarget)
		}
		fmt.Fprintf(w, "  connecting   %.2fs, %.0f conns/s established on average (%s)\n",
			r.Connect.ConnectS, r.Connect.AcceptRate, target)
		writeRamp(w, r.Connect.Ramp)
		if r.Connect.FirstFailure != "" {
			fmt.Fprintf(w, "  first failure: %s\n", r.Connect.FirstFailure)
		}
	}
	if rc := r.Reconnect; rc != nil {
		rc.writeSummary(w)
	}
	if p := r.Ports; p != nil && p.Error == "" {
		fmt.Fprintf(w, "  ports        ephemeral %d-%d, tcp_tw_reuse %d, %d TIME_WAIT toward the targets before the run\n",
			p.RangeLo, p.RangeHi, p.TWReuse, p.TimeWait)
		for _, m := range p.Warnings {
			fmt.Fprintf(w, "  WARNING      %s\n", m)
		}
	}
	m := r.Messages
	if m.Sent > 0 || m.Received > 0 {
		unanswered := ""
		if m.Unanswered > 0 {
			unanswered = fmt.Sprintf(", unanswered %d (written on connections the server closed)", m.Unanswered)
		}
		fmt.Fprintf(w, "  messages     sent %d, received %d, errors %d%s%s, lost %d\n",
			m.Sent, m.Received, sum(m.ErrorsByCode), byCode(m.ErrorsByCode), unanswered, m.Lost)
		fmt.Fprintf(w, "  throughput   %.0f msgs/s\n", r.Throughput)
		l := r.LatencyUs
		fmt.Fprintf(w, "  latency µs   p50 %.1f  p90 %.1f  p95 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
			l.P50, l.P90, l.P95, l.P99, l.P999, l.Max)
	}
	if r.Floor.Throughput > 0 {
		fmt.Fprintf(w, "  floor        bare gnet echo %.0f msgs/s; switchboard/floor = %.2f\n", r.Floor.Throughput, r.Floor.Ratio)
		if l := r.Floor.LatencyUs; l != nil {
			fmt.Fprintf(w, "  floor µs     p50 %.1f  p90 %.1f  p95 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
				l.P50, l.P90, l.P95, l.P99, l.P999, l.Max)
		}
	}
	if o := r.Overload; o != nil {
		rec := "not back to baseline within the recovery phase"
		if o.RecoveryS >= 0 {
			rec = fmt.Sprintf("back to baseline %.1fs after the spike", o.RecoveryS)
		}
		fmt.Fprintf(w, "  probe        baseline p99 %.0f µs (threshold %.0f µs); %s\n", o.BaselineP99Us, o.ThresholdUs, rec)
		fmt.Fprintf(w, "  probe msgs   sent %d, received %d, errors %d%s\n", o.Sent, o.Received,
			sum(o.ErrorsByCode), byCode(o.ErrorsByCode))
	}
	s := r.Server
	switch {
	case s.Source == "none":
		fmt.Fprintf(w, "  server       (no --server-pid or --admin: no server figures)\n")
	case s.Error != "":
		fmt.Fprintf(w, "  server       %s: %s\n", s.Source, s.Error)
	default:
		perConn := "" // the connect scenario's figure; the others would print 0
		if s.RSSPerConn > 0 {
			perConn = fmt.Sprintf(", %.0f B/conn", s.RSSPerConn)
		}
		fmt.Fprintf(w, "  server       RSS %s → %s (peak %s)%s, CPU %.2fs (%.2f µs/msg)  [%s]\n",
			mib(s.RSSBefore), mib(s.RSSAfter), mib(s.RSSPeak), perConn, s.CPUSeconds, s.CPUPerMsgUs, s.Source)
	}
	if g := r.LoadGen; g.CPUSeconds > 0 {
		fmt.Fprintf(w, "  load gen     CPU %.2fs (%.2f µs/msg)\n", g.CPUSeconds, g.CPUPerMsgUs)
	}
	if m := r.Machine; m != nil {
		fmt.Fprintf(w, "  machine      CPU busy %.0f%%, stolen by the hypervisor %.1f%% (compare runs at like steal)\n", m.BusyPct, m.StealPct)
	}
	if r.Failed != "" {
		fmt.Fprintf(w, "  RUN FAILED: %s\n", r.Failed)
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func sum[V int | uint64](m map[string]V) V {
	var n V
	for _, v := range m {
		n += v
	}
	return n
}

func byCode[V int | uint64](m map[string]V) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(" (")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	b.WriteString(")")
	return b.String()
}

// writeCauses prints failure counts by cause, most frequent first, each with its hint.
func writeCauses(w io.Writer, indent string, m map[string]int) {
	keys := make([]string, 0, len(m))
	for k, n := range m {
		if n > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		fmt.Fprintf(w, "%sfailed %-26s %d", indent, k, m[k])
		if h := causeHint(k); h != "" {
			fmt.Fprintf(w, "  (%s)", h)
		}
		fmt.Fprintln(w)
	}
}
