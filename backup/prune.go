package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/vmmount/vmmount/backup/repo"
)

// ErrDependents means a point cannot go away because others are built on
// it (forget without merging).
var ErrDependents = errors.New("other restore points depend on it")

// PruneResult says what Prune did (or, dry, would do) to one VM.
type PruneResult struct {
	VM        string          `json:"vm"`
	Decisions []PruneDecision `json:"points"`
	// Merges lists each fold: the point removed, the point it went into.
	Merges []Merge `json:"merges,omitempty"`
	// Cleaned lists leftovers of interrupted runs finished or removed.
	Cleaned []string `json:"cleaned,omitempty"`
}

// PruneDecision is the fate of one point.
type PruneDecision struct {
	ID      string   `json:"id"`
	Keep    bool     `json:"keep"`
	Reasons []string `json:"reasons,omitempty"`
}

// Merge is one fold.
type Merge struct {
	From string `json:"from"`
	Into string `json:"into"`
}

// Prune applies the retention policy to vm's points. A kept incremental
// whose parent goes is merged with it (fold.go), so every kept point stays
// readable; points nothing kept depends on are removed. dry only decides.
func Prune(ctx context.Context, r *repo.Repo, vm string, policy repo.Policy, dry bool) (*PruneResult, error) {
	if policy.Empty() {
		return nil, errors.New("a retention policy keeps nothing: give at least one --keep-* rule")
	}
	res := &PruneResult{VM: vm}
	lock, err := r.LockVM(vm)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	if !dry {
		if res.Cleaned, err = r.CleanPartial(vm); err != nil {
			return nil, err
		}
		folded, err := recoverFolds(ctx, r, vm)
		res.Cleaned = append(res.Cleaned, folded...)
		if err != nil {
			return res, err
		}
	}
	points, errs, err := r.Points(vm)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s has damaged points; run vmmount verify first: %w", vm, errors.Join(errs...))
	}
	keep := map[string]bool{}
	for _, d := range policy.Apply(points) {
		keep[d.Point.ID] = d.Keep
		res.Decisions = append(res.Decisions, PruneDecision{ID: d.Point.ID, Keep: d.Keep, Reasons: d.Reasons})
	}
	byID := map[string]*repo.Point{}
	for _, p := range points {
		byID[p.ID] = p
	}
	// Fold, for each kept point, its pruned ancestors into it, nearest
	// first, until its parent is kept or it is full.
	for _, c := range slices.Clone(points) {
		if !keep[c.ID] {
			continue
		}
		for c.Manifest.Parent != "" && !keep[c.Manifest.Parent] {
			x := byID[c.Manifest.Parent]
			if x == nil {
				return res, fmt.Errorf("%s: %w: its parent %s is missing", c.Ref(), repo.ErrCorrupt, c.Manifest.Parent)
			}
			res.Merges = append(res.Merges, Merge{From: x.ID, Into: c.ID})
			if dry {
				// Pretend: c now has x's parent.
				m := *c.Manifest
				m.Parent = x.Manifest.Parent
				c = &repo.Point{VM: c.VM, ID: c.ID, Dir: c.Dir, Manifest: &m}
				continue
			}
			if !onlyChild(points, x, c) {
				return res, fmt.Errorf("%s: %w: several points are built on it", x.Ref(), repo.ErrCorrupt)
			}
			if err := fold(ctx, r, x, c, true); err != nil {
				return res, fmt.Errorf("merging %s into %s: %w", x.Ref(), c.ID, err)
			}
			delete(byID, x.ID)
			points = slices.DeleteFunc(points, func(p *repo.Point) bool { return p.ID == x.ID })
			if c, err = r.PointAny(vm, c.ID); err != nil {
				return res, err
			}
			byID[c.ID] = c
		}
	}
	if dry {
		return res, nil
	}
	// What is left to prune: nothing kept depends on it any more. Remove
	// the newest first, so a point is never left on a removed parent.
	for i := len(points) - 1; i >= 0; i-- {
		if p := points[i]; !keep[p.ID] {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			if err := r.Remove(p); err != nil {
				return res, err
			}
		}
	}
	return res, renumber(r, vm)
}

// renumber brings the chain lengths the manifests record up to date after
// merges shortened chains.
func renumber(r *repo.Repo, vm string) error {
	points, _, err := r.Points(vm)
	if err != nil {
		return err
	}
	for _, p := range points {
		chain, err := r.Chain(p)
		if err != nil {
			return err
		}
		if p.Manifest.ChainLength != len(chain) {
			m := *p.Manifest
			m.ChainLength = len(chain)
			if err := r.UpdateManifest(p, &m); err != nil {
				return err
			}
		}
	}
	return nil
}

// onlyChild reports whether c is the only point built on x.
func onlyChild(points []*repo.Point, x, c *repo.Point) bool {
	for _, p := range points {
		if p.ID != c.ID && p.Manifest.Parent == x.ID {
			return false
		}
	}
	return true
}

// Forget removes one point. A point others are built on is refused unless
// merge is set; then it is merged into its child first.
func Forget(ctx context.Context, r *repo.Repo, ref string, merge bool) (*PruneResult, error) {
	p, err := r.Point(ref)
	if err != nil {
		return nil, err
	}
	res := &PruneResult{VM: p.VM}
	lock, err := r.LockVM(p.VM)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	if res.Cleaned, err = r.CleanPartial(p.VM); err != nil {
		return nil, err
	}
	folded, err := recoverFolds(ctx, r, p.VM)
	res.Cleaned = append(res.Cleaned, folded...)
	if err != nil {
		return res, err
	}
	// Read again under the lock.
	if p, err = r.Point(p.VM + "/" + p.ID); err != nil {
		return res, err
	}
	points, _, err := r.Points(p.VM)
	if err != nil {
		return res, err
	}
	var children []*repo.Point
	for _, c := range points {
		if c.Manifest.Parent == p.ID {
			children = append(children, c)
		}
	}
	res.Decisions = []PruneDecision{{ID: p.ID}}
	if len(children) > 0 && !merge {
		var ids []string
		for _, c := range children {
			ids = append(ids, c.ID)
		}
		return res, fmt.Errorf("%s: %w (%v); --merge merges it into them", p.Ref(), ErrDependents, ids)
	}
	switch len(children) {
	case 0:
		return res, r.Remove(p)
	case 1:
		res.Merges = append(res.Merges, Merge{From: p.ID, Into: children[0].ID})
		if err := fold(ctx, r, p, children[0], true); err != nil {
			return res, err
		}
		return res, renumber(r, p.VM)
	}
	// vmmount only makes linear chains: each point is built on the newest
	// one before it.
	return res, fmt.Errorf("%s: %w: %d points are built on it", p.Ref(), repo.ErrCorrupt, len(children))
}
