package console

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// Size of the overview's bar charts, in SVG user units (CSS pixels).
const (
	chartWidth  = 180
	chartHeight = 36
)

// chart draws a row's bars as an inline SVG: one bar per chartBucket, the
// highest as tall as the chart, a title on each bar with its time and
// count. Everything written is numbers and times, so nothing needs
// escaping, and the page stays free of external assets.
func chart(r overviewRow) template.HTML {
	n := len(r.Bars)
	if n == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" width="%d" height="%d" viewBox="0 0 %d %d"><title>%s per %s, last %s</title>`,
		chartWidth, chartHeight, chartWidth, chartHeight, template.HTMLEscapeString(r.Name), chartBucket, historyLength)
	fmt.Fprintf(&b, `<line x1="0" y1="%d" x2="%d" y2="%d"/>`, chartHeight-1, chartWidth, chartHeight-1)
	w := float64(chartWidth) / float64(n)
	for i, bar := range r.Bars {
		h := 0.0
		if r.Max > 0 {
			h = bar.Value / r.Max * float64(chartHeight-2)
		}
		if bar.Value > 0 && h < 1 {
			h = 1
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %.0f</title></rect>`,
			float64(i)*w+0.5, float64(chartHeight-1)-h, w-1, h, bar.Start.UTC().Format(time.TimeOnly[:5]), bar.Value)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
