package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A fold merges a point that is going away (Point) into the one point
// built on it (Into), which then takes Point's parent (Parent, "" for
// none). It changes image files in place, so it is journaled: the journal
// REPO/<vm>/.fold-<Point>.json is written before anything is touched and
// removed last. While it exists Point is hidden (it is no longer a valid
// view of the disk), and the next prune, forget or backup of the VM
// finishes the fold before doing anything else (package backup).
type Fold struct {
	Point  string `json:"point"`
	Into   string `json:"into"`
	Parent string `json:"parent,omitempty"`
}

const foldPrefix = ".fold-"

func (r *Repo) foldPath(vm, id string) string {
	return filepath.Join(r.VMDir(vm), foldPrefix+id+".json")
}

// BeginFold records f durably. Call with the VM's lock held.
func (r *Repo) BeginFold(vm string, f Fold) error {
	for _, id := range []string{f.Point, f.Into} {
		if err := checkID(id); err != nil {
			return err
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return writeFileSync(r.foldPath(vm, f.Point), append(b, '\n'), 0o600)
}

// EndFold removes f's journal once it is complete.
func (r *Repo) EndFold(vm string, f Fold) error {
	if err := os.Remove(r.foldPath(vm, f.Point)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(r.VMDir(vm))
}

// Folds lists the folds of vm that were begun and not ended.
func (r *Repo) Folds(vm string) ([]Fold, error) {
	ents, err := os.ReadDir(r.VMDir(vm))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []Fold
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, foldPrefix) || !strings.HasSuffix(n, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.VMDir(vm), n))
		if err != nil {
			return nil, err
		}
		var f Fold
		if err := json.Unmarshal(b, &f); err != nil || checkID(f.Point) != nil || checkID(f.Into) != nil ||
			(f.Parent != "" && checkID(f.Parent) != nil) || foldPrefix+f.Point+".json" != n {
			return nil, fmt.Errorf("%s/%s: %w: fold journal unreadable", vm, n, ErrCorrupt)
		}
		out = append(out, f)
	}
	return out, nil
}

// folding reports whether id is being folded away.
func (r *Repo) folding(vm, id string) bool {
	_, err := os.Lstat(r.foldPath(vm, id))
	return err == nil
}

// PointAny reads a point even while it is being folded away (fold
// recovery needs it).
func (r *Repo) PointAny(vm, id string) (*Point, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return r.point(vm, id)
}

// UpdateManifest replaces a published point's manifest atomically.
func (r *Repo) UpdateManifest(p *Point, m *Manifest) error {
	if m.ID != p.ID {
		return fmt.Errorf("manifest of %s given for point %s", m.ID, p.Ref())
	}
	m.Schema = SchemaVersion
	if err := writeManifest(p.Path(ManifestFile), m); err != nil {
		return err
	}
	p.Manifest = m
	return nil
}

// Remove deletes a published point: renamed out of sight first (atomic),
// then deleted, then latest is refreshed. It does not check whether other
// points depend on it; package backup's Forget and Prune do.
func (r *Repo) Remove(p *Point) error { return r.remove(p) }

// SyncDir makes a directory's entries durable (after renames into it).
func SyncDir(dir string) error { return syncDir(dir) }
