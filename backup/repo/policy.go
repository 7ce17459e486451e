package repo

import (
	"fmt"
	"time"
)

// Policy says which points to keep, as restic's forget does: a point is
// kept when any rule keeps it. Each rule keeps the newest point of each of
// its N most recent periods (days, ISO weeks, months) that have points.
type Policy struct {
	Last    int
	Daily   int
	Weekly  int
	Monthly int
}

// Empty reports whether no rule is set (keeping nothing would delete all).
func (p Policy) Empty() bool { return p.Last <= 0 && p.Daily <= 0 && p.Weekly <= 0 && p.Monthly <= 0 }

// Decision is the outcome for one point.
type Decision struct {
	Point   *Point
	Keep    bool
	Reasons []string // rules that keep it
}

// Apply decides for points sorted oldest first. The newest point is always
// kept (a policy must never empty a VM).
func (p Policy) Apply(points []*Point) []Decision {
	out := make([]Decision, len(points))
	for i, pt := range points {
		out[i].Point = pt
	}
	type rule struct {
		name string
		n    int
		key  func(time.Time) string
	}
	rules := []rule{
		{"last", p.Last, nil},
		{"daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{"monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") }},
	}
	for _, r := range rules {
		if r.n <= 0 {
			continue
		}
		seen := map[string]bool{}
		left := r.n
		for i := len(points) - 1; i >= 0 && left > 0; i-- {
			if r.key != nil {
				k := r.key(pointTime(points[i]))
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			out[i].Keep = true
			out[i].Reasons = append(out[i].Reasons, r.name)
			left--
		}
	}
	if n := len(out); n > 0 && !out[n-1].Keep {
		out[n-1].Keep = true
		out[n-1].Reasons = append(out[n-1].Reasons, "newest")
	}
	return out
}

func pointTime(p *Point) time.Time {
	if p.Manifest != nil && !p.Manifest.Time.IsZero() {
		return p.Manifest.Time.UTC()
	}
	return IDTime(p.ID)
}
