package geocache

import (
	"testing"

	"github.com/oschwald/geoip2-golang/v2"
)

func BenchmarkDiagHit(b *testing.B) {
	d := loadBench(b)
	c, _ := Open[geoip2.City](d.path, &Options{MaxCost: 512 << 20})
	defer c.Close()
	for range 2 {
		for _, a := range d.zipf {
			c.Lookup(a)
		}
		waitCache(c)
	}
	s0 := c.Stats()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		c.Lookup(d.zipf[i&(streamLen-1)])
		i++
	}
	s1 := c.Stats()
	b.ReportMetric(float64(s1.Misses-s0.Misses), "misses")
	b.ReportMetric(float64(s1.SlowHits-s0.SlowHits)/float64(s1.Hits-s0.Hits)*100, "slow%")
}

func BenchmarkDiagHitSmall(b *testing.B) {
	d := loadBench(b)
	c, _ := Open[geoip2.City](d.path, &Options{MaxCost: 512 << 20})
	defer c.Close()
	small := d.zipf[:1024]
	for range 3 {
		for _, a := range small {
			c.Lookup(a)
		}
		waitCache(c)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		c.Lookup(small[i&1023])
		i++
	}
}

func BenchmarkDiagKeyOnly(b *testing.B) {
	d := loadBench(b)
	small := d.zipf[:1024]
	var x uint64
	i := 0
	for b.Loop() {
		a := small[i&1023].Unmap()
		x += blockKey(a, stride(a))
		i++
	}
	_ = x
}
