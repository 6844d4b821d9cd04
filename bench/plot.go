package bench

import (
	"fmt"
	"math"
	"os"
	"strings"
)

// Plot layout: two panels sharing the time axis, throughput above, p50/p99 latency below.
const (
	plotW, plotH = 900, 560
	plotLeft     = 80
	plotRight    = 30
	panelH       = 200
	panel1Top    = 50
	panel2Top    = 310
)

// Line colours, as SVG colour values.
const (
	colThroughput = "#1f77b4"
	colP50        = "#2ca02c"
	colP99        = "#d62728"
)

// series is one line of the plot.
type series struct {
	name string
	col  string // SVG colour
	ys   []float64
}

// panel is one chart: its lines share a y scale from 0 to yMax.
type panel struct {
	title string
	unit  string
	top   int
	lines []series
	yMax  float64
}

func plotPanels(res *Result) (int, []panel) {
	n := len(res.Series)
	tp := make([]float64, n)
	p50 := make([]float64, n)
	p99 := make([]float64, n)
	for i, p := range res.Series {
		tp[i], p50[i], p99[i] = p.Throughput, p.P50Us, p.P99Us
	}
	panels := []panel{
		{title: "throughput", unit: "msgs/s", top: panel1Top, lines: []series{{"msgs/s", colThroughput, tp}}},
		{title: "latency", unit: "µs", top: panel2Top, lines: []series{{"p50", colP50, p50}, {"p99", colP99, p99}}},
	}
	for i := range panels {
		for _, l := range panels[i].lines {
			for _, y := range l.ys {
				panels[i].yMax = math.Max(panels[i].yMax, y)
			}
		}
		panels[i].yMax = niceCeil(panels[i].yMax)
	}
	return n, panels
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

func xOf(i, n int) float64 {
	if n <= 1 {
		return plotLeft
	}
	return plotLeft + float64(i)*float64(plotW-plotLeft-plotRight)/float64(n-1)
}

func yOf(p panel, y float64) float64 { return float64(p.top+panelH) - y/p.yMax*panelH }

// writePlot draws the run's per-second series into an SVG file. There is no PNG: a
// raster writer would pull font code into every switchboard binary, and any browser or
// `rsvg-convert` turns the SVG into one.
func writePlot(name string, res *Result) error {
	return os.WriteFile(name, []byte(renderSVG(res)), 0o644)
}

func renderSVG(res *Result) string {
	n, panels := plotPanels(res)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16">switchboard bench %s — %s</text>`+"\n", plotLeft, res.Scenario, res.StartedAt.Format("2006-01-02 15:04:05"))
	for _, p := range panels {
		for g := 0; g <= 4; g++ {
			y := float64(p.top) + float64(g)*panelH/4
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", plotLeft, y, plotW-plotRight, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", plotLeft-6, y+4, short(p.yMax*float64(4-g)/4))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s (%s)</text>`+"\n", plotLeft, p.top-8, p.title, p.unit)
		lx := plotW - plotRight - 60*len(p.lines)
		for i, l := range p.lines {
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", lx+60*i, p.top-8, l.col, l.name)
			var pts []string
			for j, y := range l.ys {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(j, n), yOf(p, y)))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", l.col, strings.Join(pts, " "))
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>`+"\n", plotLeft, p.top+panelH, plotW-plotRight, p.top+panelH)
	}
	for j := 0; j < n; j += max(1, n/10) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%ds</text>`+"\n", xOf(j, n), panel2Top+panelH+18, j+1)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
