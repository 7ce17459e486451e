package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// MarkerFile marks a directory as a repository.
const MarkerFile = "vmmount-repository.json"

// LatestLink is the per-VM symlink to the newest point.
const LatestLink = "latest"

const partialPrefix = ".partial-"

// Errors.
var (
	ErrNotRepo = errors.New("not a vmmount repository")
	ErrCorrupt = errors.New("repository corrupt")
	ErrNoPoint = fmt.Errorf("no such restore point: %w", fs.ErrNotExist)
	ErrNoVM    = fmt.Errorf("no such VM in repository: %w", fs.ErrNotExist)
	ErrLocked  = errors.New("another backup of this VM is running")
	ErrBadName = errors.New("invalid name")
)

// DefaultDir is where root's repository lives when neither --repo nor
// VMMOUNT_REPO names one.
const DefaultDir = "/var/lib/vmmount/repository"

// Repo is an open repository.
type Repo struct {
	Dir string
}

type marker struct {
	Schema  int       `json:"schema"`
	Created time.Time `json:"created"`
}

// Open opens an existing repository.
func Open(dir string) (*Repo, error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w (create it with a first backup, or vmmount init)", dir, ErrNotRepo)
		}
		return nil, err
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", dir, ErrCorrupt, err)
	}
	if m.Schema > SchemaVersion {
		return nil, fmt.Errorf("%s: repository schema %d is newer than this vmmount (%d)", dir, m.Schema, SchemaVersion)
	}
	return &Repo{Dir: dir}, nil
}

// OpenOrInit opens dir as a repository, creating it if it does not exist or
// is an empty directory.
func OpenOrInit(dir string) (*Repo, error) {
	r, err := Open(dir)
	if err == nil || !errors.Is(err, ErrNotRepo) {
		return r, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("%s: %w and not empty; refusing to turn it into one", dir, ErrNotRepo)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(marker{Schema: SchemaVersion, Created: time.Now().UTC()}, "", "  ")
	if err := writeFileSync(filepath.Join(dir, MarkerFile), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return &Repo{Dir: dir}, nil
}

// VMDir is the directory of a VM's points.
func (r *Repo) VMDir(vm string) string { return filepath.Join(r.Dir, vm) }

// VMs lists the VMs with at least one directory in the repository, sorted.
func (r *Repo) VMs() ([]string, error) {
	ents, err := os.ReadDir(r.Dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && CheckVMName(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Point is a published restore point.
type Point struct {
	VM       string
	ID       string
	Dir      string
	Manifest *Manifest
}

// Ref is "VM/id".
func (p *Point) Ref() string { return p.VM + "/" + p.ID }

// Path returns the path of a file of the point.
func (p *Point) Path(name string) string { return filepath.Join(p.Dir, name) }

// Points lists a VM's published points, oldest first. A directory whose
// manifest cannot be read is reported in errs and skipped, so one damaged
// point does not hide the others.
func (r *Repo) Points(vm string) (points []*Point, errs []error, err error) {
	if err := CheckVMName(vm); err != nil {
		return nil, nil, err
	}
	ents, err := os.ReadDir(r.VMDir(vm))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s: %w", vm, ErrNoVM)
		}
		return nil, nil, err
	}
	for _, e := range ents {
		if !e.IsDir() || checkID(e.Name()) != nil || r.folding(vm, e.Name()) {
			continue
		}
		p, err := r.point(vm, e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		points = append(points, p)
	}
	slices.SortFunc(points, func(a, b *Point) int { return CompareIDs(a.ID, b.ID) })
	return points, errs, nil
}

func (r *Repo) point(vm, id string) (*Point, error) {
	dir := filepath.Join(r.VMDir(vm), id)
	m, err := ReadManifest(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("point %s/%s: %w", vm, id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("point %s/%s: %w: manifest says id %s", vm, id, ErrCorrupt, m.ID)
	}
	return &Point{VM: vm, ID: id, Dir: dir, Manifest: m}, nil
}

// Point finds "VM/id" or "VM/latest".
func (r *Repo) Point(ref string) (*Point, error) {
	vm, id, ok := strings.Cut(ref, "/")
	if !ok || vm == "" || id == "" || strings.Contains(id, "/") {
		return nil, fmt.Errorf("%q: %w: a restore point is VM/ID or VM/latest", ref, ErrBadName)
	}
	if err := CheckVMName(vm); err != nil {
		return nil, err
	}
	if id == LatestLink {
		return r.Latest(vm)
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	if r.folding(vm, id) {
		return nil, fmt.Errorf("%s: %w (being merged into the next point)", ref, ErrNoPoint)
	}
	p, err := r.point(vm, id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", ref, ErrNoPoint)
	}
	return p, err
}

// Latest is the newest published point of vm. It trusts the directory
// listing rather than the latest link, which is a convenience for people
// and may lag by one point after a crash.
func (r *Repo) Latest(vm string) (*Point, error) {
	points, _, err := r.Points(vm)
	if err != nil {
		return nil, err
	}
	if len(points) == 0 {
		return nil, fmt.Errorf("%s/latest: %w", vm, ErrNoPoint)
	}
	return points[len(points)-1], nil
}

// Chain returns p and its ancestors, p first. A missing ancestor is an
// error: the point's images cannot be read without it.
func (r *Repo) Chain(p *Point) ([]*Point, error) {
	chain := []*Point{p}
	seen := map[string]bool{p.ID: true}
	for cur := p; cur.Manifest.Parent != ""; {
		parent, err := r.point(p.VM, cur.Manifest.Parent)
		if err != nil {
			return nil, fmt.Errorf("point %s: parent: %w", cur.Ref(), err)
		}
		if seen[parent.ID] || CompareIDs(parent.ID, cur.ID) >= 0 {
			return nil, fmt.Errorf("point %s: %w: parent chain loops or goes forward in time", p.Ref(), ErrCorrupt)
		}
		seen[parent.ID] = true
		chain = append(chain, parent)
		cur = parent
	}
	return chain, nil
}

// CheckVMName accepts names usable as one path component.
func CheckVMName(name string) error {
	if !isPlainName(name) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("VM name %q: %w", name, ErrBadName)
	}
	return nil
}

// isPlainName accepts a single, harmless path component.
func isPlainName(n string) bool {
	if n == "" || n == "." || n == ".." || len(n) > 255 {
		return false
	}
	for _, c := range n {
		if c == '/' || c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// idLayout is the time part of point ids.
const idLayout = "20060102T150405Z"

// NewID returns the id for a point taken at t.
func NewID(t time.Time) string { return t.UTC().Format(idLayout) }

func checkID(id string) error {
	base, suffix, _ := strings.Cut(id, "-")
	if _, err := time.Parse(idLayout, base); err != nil {
		return fmt.Errorf("restore point id %q: %w", id, ErrBadName)
	}
	for _, c := range suffix {
		if c < '0' || c > '9' {
			return fmt.Errorf("restore point id %q: %w", id, ErrBadName)
		}
	}
	return nil
}

// CompareIDs orders point ids by time, then by suffix (-2 before -10).
func CompareIDs(a, b string) int {
	ab, as, _ := strings.Cut(a, "-")
	bb, bs, _ := strings.Cut(b, "-")
	if c := strings.Compare(ab, bb); c != 0 {
		return c
	}
	if c := len(as) - len(bs); c != 0 {
		return c
	}
	return strings.Compare(as, bs)
}

// IDTime is the time a point id encodes.
func IDTime(id string) time.Time {
	base, _, _ := strings.Cut(id, "-")
	t, _ := time.Parse(idLayout, base)
	return t
}
