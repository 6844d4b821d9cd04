package bench

import (
	"fmt"
	"io"
	"strings"
)

// The connecting phase is reported as a ramp: connections established in each second
// since the pass started, merged over parts by wall-clock second (workers on one machine
// share the clock), so that a run shows the rate it achieved over time and where it
// stalled, not only its average.

// RampPoint is one second of the connecting phase.
type RampPoint struct {
	Sec         int `json:"sec"`         // seconds since the pass started
	Established int `json:"established"` // connections established in this second
	Failed      int `json:"failed"`      // connections refused or failed in this second
	Total       int `json:"total"`       // established up to the end of this second
}

// rampCounts counts outcomes by second since t0 (Unix ns). Not safe for concurrent use.
type rampCounts struct {
	t0          int64
	established []int
	failed      []int
}

func (r *rampCounts) sec(nowUnixNs int64) int {
	return max(0, int((nowUnixNs-r.t0)/1e9))
}

// bump adds one to s[sec], growing s.
func bump(s []int, sec int) []int {
	for len(s) <= sec {
		s = append(s, 0)
	}
	s[sec]++
	return s
}

// addInto adds src into dst element by element, growing dst.
func addInto(dst, src []int) []int {
	for len(dst) < len(src) {
		dst = append(dst, 0)
	}
	for i, v := range src {
		dst[i] += v
	}
	return dst
}

// rampSeries turns per-second counts into points; seconds after the last outcome are
// left out.
func rampSeries(established, failed []int) []RampPoint {
	n := max(len(established), len(failed))
	pts := make([]RampPoint, 0, n)
	total := 0
	at := func(s []int, i int) int {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	for i := range n {
		total += at(established, i)
		pts = append(pts, RampPoint{Sec: i, Established: at(established, i), Failed: at(failed, i), Total: total})
	}
	for len(pts) > 0 && pts[len(pts)-1].Established == 0 && pts[len(pts)-1].Failed == 0 {
		pts = pts[:len(pts)-1]
	}
	return pts
}

// peakRate is the highest number of connections established in one second.
func peakRate(pts []RampPoint) int {
	peak := 0
	for _, p := range pts {
		peak = max(peak, p.Established)
	}
	return peak
}

// writeRamp prints the per-second rates, at most perLine to a line.
func writeRamp(w io.Writer, pts []RampPoint) {
	const perLine = 12
	if len(pts) == 0 {
		return
	}
	fmt.Fprintf(w, "  ramp         peak %d conns/s; established per second (failed in brackets):\n", peakRate(pts))
	for i := 0; i < len(pts); i += perLine {
		var b strings.Builder
		for _, p := range pts[i:min(i+perLine, len(pts))] {
			fmt.Fprintf(&b, " %d", p.Established)
			if p.Failed > 0 {
				fmt.Fprintf(&b, "[%d]", p.Failed)
			}
		}
		fmt.Fprintf(w, "    %-9s%s\n", fmt.Sprintf("%d-%ds", pts[i].Sec, pts[min(i+perLine, len(pts))-1].Sec+1), b.String())
	}
}

// progress is a part's running count during its connecting phase.
type progress struct {
	Established int `json:"established"`
	Refused     int `json:"refused"`
	Failed      int `json:"failed"`
}
