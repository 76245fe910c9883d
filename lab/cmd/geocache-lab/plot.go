//go:build linux

package main

import (
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotLatency draws each lookup's latency against when it started, one
// series per run, on a log scale.
func plotLatency(path, title string, series map[string][]sample) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time since the first lookup (ms)"
	p.Y.Label.Text = "lookup latency (us, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: 0}
	p.Legend.Top = true
	palette := []color.Color{ // in name order: warmed, then the cold runs
		color.RGBA{R: 38, G: 139, B: 210, A: 255},
		color.RGBA{R: 220, G: 50, B: 47, A: 255},
		color.RGBA{R: 181, G: 137, B: 0, A: 255},
	}
	names := make([]string, 0, len(series))
	for name := range series {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		var pts plotter.XYs
		for _, s := range series[name] {
			pts = append(pts, plotter.XY{X: float64(s.at) / 1e6, Y: max(float64(s.took)/1e3, 0.1)})
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return err
		}
		sc.Color = palette[i%len(palette)]
		sc.Radius = vg.Points(1.5)
		sc.Shape = draw.CircleGlyph{}
		p.Add(sc)
		p.Legend.Add(name, sc)
	}
	return p.Save(7*vg.Inch, 4*vg.Inch, path)
}
