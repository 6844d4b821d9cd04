package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// FailoverResult is the report of a failover run (text: WriteText; JSON: its fields).
type FailoverResult struct {
	Config    FailoverConfig `json:"config"`
	StartedAt time.Time      `json:"started_at"`
	Action    string         `json:"action"` // "kill", "stop" or "drain"
	VictimPID int            `json:"victim_pid"`
	Victim    string         `json:"victim_addr"`
	// KilledAtS is when the signal was sent, seconds after the traffic started;
	// ContinuedAtS when SIGCONT was (stop only).
	KilledAtS    float64 `json:"killed_at_s"`
	ContinuedAtS float64 `json:"continued_at_s,omitempty"`
	// VictimClients were connected to the victim when it was signalled; VictimNames are
	// theirs.
	VictimClients int `json:"victim_clients"`
	// Reconnect: from the signal until each victim client was connected to another node
	// (client state Connected: its first round of REGISTERs answered, whether or not the
	// node could decide them yet; Reach says when its name worked); Missing never did.
	Reconnect Durations `json:"reconnect"`
	// Reach: from the signal until the first delivery to each victim name of a message sent
	// after the signal (measured by the traffic itself: each name receives about
	// rate/clients messages per second); Missing never got one.
	Reach       Durations `json:"reach"`
	ReachMethod string    `json:"reach_method"`
	// NamesLost counts client NameLost events: a name not registered again after a
	// reconnect because another connection held it.
	NamesLost int            `json:"names_lost"`
	Send      SendAccount    `json:"send"`
	Request   RequestAccount `json:"request"`
	// Skipped messages were not sent: 8192 calls were in flight already.
	Skipped int `json:"skipped"`
	// Foreign frames arrived whose payload is no message of this run.
	Foreign    int        `json:"foreign"`
	Scan       ScanResult `json:"scan"`
	Violations []string   `json:"violations"`
	Error      string     `json:"error,omitempty"`
}

// WriteText writes the human-readable report.
func (r *FailoverResult) WriteText(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "failover: %s of node %s (pid %d) at %.2f s", r.Action, r.Victim, r.VictimPID, r.KilledAtS)
	if r.Action == "stop" {
		fmt.Fprintf(w, ", SIGCONT at %.2f s", r.ContinuedAtS)
	}
	fmt.Fprintf(w, "; %d clients over %d nodes, %s at %.0f msg/s for %v\n", c.Clients, len(c.Addrs), c.Mode, c.Rate, c.Duration)
	d := func(name string, x Durations, unit string) {
		fmt.Fprintf(w, "  %-22s n=%d  p50 %.1f ms  p99 %.1f ms  max %.1f ms  %s %d\n", name, x.N, x.P50Ms, x.P99Ms, x.MaxMs, unit, x.Missed)
	}
	fmt.Fprintf(w, "  victim's clients       %d (names lost on re-register: %d)\n", r.VictimClients, r.NamesLost)
	d("reconnect", r.Reconnect, "never reconnected")
	d("names reachable again", r.Reach, "never reachable")
	fmt.Fprintf(w, "  (%s)\n", r.ReachMethod)
	s := r.Send
	if s.Sent > 0 {
		fmt.Fprintf(w, "  SEND+ACK  sent %d = ok %d + refused %d %s + no outcome %d %s\n", s.Sent, s.OK, sumCounts(s.Refused),
			fmtCounts(s.Refused), sumCounts(s.NoOutcome), fmtCounts(s.NoOutcome))
		fmt.Fprintf(w, "            delivered %d, duplicates %d, ACKED BUT NEVER DELIVERED %d, delivered without OK %d (of which refused %d), misrouted %d\n",
			s.Delivered, s.Duplicates, s.AckedNotDelivered, s.DeliveredWithoutOK, s.RefusedButDelivered, s.Misrouted)
		if s.AckedLostWithTarget > 0 {
			fmt.Fprintf(w, "            acknowledged by the signalled node and lost with its target's connection: %d (allowed: OK means queued for the target)\n",
				s.AckedLostWithTarget)
		}
	}
	q := r.Request
	if q.Sent > 0 {
		fmt.Fprintf(w, "  REQUEST   sent %d = answered %d + refused %d %s + no outcome %d %s + wrong answer %d\n", q.Sent, q.Answered,
			sumCounts(q.Refused), fmtCounts(q.Refused), sumCounts(q.NoOutcome), fmtCounts(q.NoOutcome), q.WrongAnswer)
		fmt.Fprintf(w, "            reached the responder %d, duplicates %d, two outcomes %d, misrouted %d\n",
			q.Delivered, q.Duplicates, q.TwoOutcomes, q.Misrouted)
	}
	if r.Skipped > 0 || r.Foreign > 0 {
		fmt.Fprintf(w, "  skipped (in-flight bound) %d, foreign frames %d\n", r.Skipped, r.Foreign)
	}
	sc := r.Scan
	fmt.Fprintf(w, "  directory scan: nodes %v, %d names, %d rounds, consistent %v: two owners %d, cache disagrees %d, dangling %d, client not local %d; orphaned %d\n",
		sc.Nodes, sc.Names, sc.Rounds, sc.Consistent, sc.TwoOwners, sc.CacheDisagrees, sc.Dangling, sc.ClientNotLocal, sc.Orphaned)
	if sc.Error != "" {
		fmt.Fprintf(w, "    scan error: %s\n", sc.Error)
	}
	for _, e := range sc.Examples {
		fmt.Fprintf(w, "    %s\n", e)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
	if len(r.Violations) == 0 {
		fmt.Fprintln(w, "  verdict: PASS (no lost, duplicate or two-outcome message, no name lost or left unreachable, no name with two owners, directory views consistent)")
		return
	}
	fmt.Fprintf(w, "  verdict: FAIL: %s\n", strings.Join(r.Violations, "; "))
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// violations lists what makes the run fail.
func (r *FailoverResult) violations() []string {
	var v []string
	add := func(n int, what string) {
		if n > 0 {
			v = append(v, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Send.AckedNotDelivered, "SEND+ACK acknowledged but never delivered")
	add(r.Send.Duplicates, "duplicate SEND deliveries")
	add(r.Request.Duplicates, "duplicate REQUEST deliveries")
	add(r.Send.TwoOutcomes+r.Request.TwoOutcomes, "calls with two outcomes")
	add(r.Request.WrongAnswer, "REQUESTs answered with another request's reply")
	add(r.Send.Misrouted+r.Request.Misrouted, "messages delivered to the wrong client")
	add(r.Scan.TwoOwners, "names with two owners")
	add(r.NamesLost, "victim clients' names lost on re-registration")
	add(r.Reach.Missed, "victim names never reachable again")
	switch { // a scan that could not check is no pass
	case r.Scan.Error != "":
		v = append(v, "directory scan failed: "+r.Scan.Error)
	case r.Scan.Rounds > 0 && !r.Scan.Consistent && r.Scan.TwoOwners == 0:
		v = append(v, fmt.Sprintf("directory views still inconsistent when the scan gave up (cache disagrees %d, dangling %d, client not local %d)",
			r.Scan.CacheDisagrees, r.Scan.Dangling, r.Scan.ClientNotLocal))
	}
	return v
}
