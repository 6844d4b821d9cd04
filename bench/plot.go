package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
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

var (
	colThroughput = color.RGBA{0x1f, 0x77, 0xb4, 0xff}
	colP50        = color.RGBA{0x2c, 0xa0, 0x2c, 0xff}
	colP99        = color.RGBA{0xd6, 0x27, 0x28, 0xff}
	colAxis       = color.RGBA{0x44, 0x44, 0x44, 0xff}
	colGrid       = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

// series is one line of the plot.
type series struct {
	name string
	col  color.RGBA
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

// writePlot draws the run's per-second series into an SVG or PNG file.
func writePlot(name string, res *Result) error {
	if strings.HasSuffix(name, ".png") {
		return writePNG(name, res)
	}
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
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", lx+60*i, p.top-8, hex(l.col), l.name)
			var pts []string
			for j, y := range l.ys {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(j, n), yOf(p, y)))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", hex(l.col), strings.Join(pts, " "))
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>`+"\n", plotLeft, p.top+panelH, plotW-plotRight, p.top+panelH)
	}
	for j := 0; j < n; j += max(1, n/10) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%ds</text>`+"\n", xOf(j, n), panel2Top+panelH+18, j+1)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func hex(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

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

// writePNG rasterises the same chart as the SVG, labels included (a fixed 7x13 font).
func writePNG(name string, res *Result) error {
	n, panels := plotPanels(res)
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	drawText(img, plotLeft, 24, colAxis, fmt.Sprintf("switchboard bench %s - %s", res.Scenario, res.StartedAt.Format("2006-01-02 15:04:05")))
	for _, p := range panels {
		for g := 0; g <= 4; g++ {
			y := float64(p.top) + float64(g)*panelH/4
			drawLine(img, plotLeft, y, plotW-plotRight, y, colGrid)
			label := short(p.yMax * float64(4-g) / 4)
			drawText(img, plotLeft-6-7*len(label), int(y)+4, colAxis, label)
		}
		drawText(img, plotLeft, p.top-8, colAxis, p.title+" ("+strings.ReplaceAll(p.unit, "µ", "u")+")")
		lx := plotW - plotRight - 60*len(p.lines)
		for i, l := range p.lines {
			drawText(img, lx+60*i, p.top-8, l.col, l.name)
		}
		drawLine(img, plotLeft, float64(p.top), plotLeft, float64(p.top+panelH), colAxis)
		drawLine(img, plotLeft, float64(p.top+panelH), plotW-plotRight, float64(p.top+panelH), colAxis)
		for _, l := range p.lines {
			for j := 1; j < len(l.ys); j++ {
				drawLine(img, xOf(j-1, n), yOf(p, l.ys[j-1]), xOf(j, n), yOf(p, l.ys[j]), l.col)
			}
		}
	}
	for j := 0; j < n; j += max(1, n/10) {
		label := fmt.Sprintf("%ds", j+1)
		drawText(img, int(xOf(j, n))-7*len(label)/2, panel2Top+panelH+18, colAxis, label)
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// drawText writes s with its baseline at (x, y).
func drawText(img *image.RGBA, x, y int, c color.RGBA, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// drawLine draws a two-pixel-thick line by stepping along its longer axis.
func drawLine(img *image.RGBA, x0, y0, x1, y1 float64, c color.RGBA) {
	steps := int(math.Max(math.Abs(x1-x0), math.Abs(y1-y0))) + 1
	for s := 0; s <= steps; s++ {
		t := float64(s) / float64(steps)
		x, y := int(x0+(x1-x0)*t), int(y0+(y1-y0)*t)
		img.SetRGBA(x, y, c)
		img.SetRGBA(x, y+1, c)
	}
}
