package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// benchFile is what "geocache bench -json" writes.
type benchFile struct {
	Database   string `json:"database"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Rows       []struct {
		Stream       string             `json:"stream"`
		Impl         string             `json:"impl"`
		Goroutines   int                `json:"goroutines"`
		PercentileNs map[string]float64 `json:"percentile_ns"`
	} `json:"rows"`
}

// implColors keeps each implementation's color the same in every chart.
var implColors = map[string]color.Color{
	"geoip2":    color.RGBA{R: 220, G: 50, B: 47, A: 255},
	"maxminddb": color.RGBA{R: 181, G: 137, B: 0, A: 255},
	"geocache":  color.RGBA{R: 38, G: 139, B: 210, A: 255},
}

// plotBench draws a "geocache bench -json" run: one panel per stream,
// lookup latency (log scale) against percentile, one line per
// implementation, dashed for N goroutines.
func plotBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plot-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "the JSON file of geocache bench -json")
	out := fs.String("out", "", "the chart to write: .svg or .png")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "geocache-lab plot-bench: %v\n", err); return 1 }
	b, err := os.ReadFile(*in)
	if err != nil {
		return fail(err)
	}
	var f benchFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fail(err)
	}
	if err := drawBench(*out, f); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "Plot: %s\n", *out)
	return 0
}

func drawBench(path string, f benchFile) error {
	var streams []string
	for _, r := range f.Rows {
		if !slices.Contains(streams, r.Stream) {
			streams = append(streams, r.Stream)
		}
	}
	var panels []*plot.Plot
	for _, stream := range streams {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s stream: %s, GOMAXPROCS=%d", stream, f.Database, f.GOMAXPROCS)
		p.X.Label.Text = "percentile"
		p.Y.Label.Text = "latency per lookup (ns, log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: 0}
		var ticks []plot.Tick
		for _, q := range []float64{50, 90, 99, 99.9, 99.99} {
			ticks = append(ticks, plot.Tick{Value: nines(q), Label: strconv.FormatFloat(q, 'g', -1, 64) + "%"})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.Legend.Top, p.Legend.Left = true, true
		for _, r := range f.Rows {
			if r.Stream != stream {
				continue
			}
			var pts plotter.XYs
			for k, ns := range r.PercentileNs {
				q, err := strconv.ParseFloat(k, 64)
				if err != nil {
					return fmt.Errorf("percentile %q: %w", k, err)
				}
				pts = append(pts, plotter.XY{X: nines(q), Y: max(ns, 1)})
			}
			slices.SortFunc(pts, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.Width = vg.Points(1.5)
			if c, ok := implColors[r.Impl]; ok {
				l.Color = c
			}
			if r.Goroutines > 1 {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("%s, %d goroutine(s)", r.Impl, r.Goroutines), l)
		}
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		return fmt.Errorf("no rows to plot")
	}
	w, h := vg.Length(len(panels))*6*vg.Inch, 4.5*vg.Inch
	var c vg.CanvasWriterTo
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		c = vgsvg.New(w, h)
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	default:
		return fmt.Errorf("-out %s: want a .svg or .png file", path)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	grid := [][]*plot.Plot{panels}
	for j, cv := range plot.Align(grid, tiles, dc)[0] {
		panels[j].Draw(cv)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// nines is a percentile's place on the x axis: -log10(1 - q/100).
func nines(q float64) float64 { return -math.Log10(1 - q/100) }
