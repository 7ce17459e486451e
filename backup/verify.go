package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/progress"
)

// VerifyOptions control Verify.
type VerifyOptions struct {
	// NoFilesystems skips opening and walking the guest filesystems.
	NoFilesystems bool
	Progress      progress.Progress
	Workers       int
}

// PointReport is the outcome of verifying one point.
type PointReport struct {
	Point  string       `json:"point"` // VM/ID
	OK     bool         `json:"ok"`
	Faults []string     `json:"faults,omitempty"`
	Disks  []DiskReport `json:"disks,omitempty"`
}

// DiskReport is what was checked on one disk of a point.
type DiskReport struct {
	Target string `json:"target"`
	// BlocksRead is how many blocks the point's own image holds and were
	// read and hashed; BlocksInherited how many it takes from its parent
	// (their digests must equal the parent's, verified before it).
	BlocksRead      int64      `json:"blocks_read"`
	BlocksInherited int64      `json:"blocks_inherited"`
	BadBlocks       int64      `json:"bad_blocks"`
	Filesystems     []FSReport `json:"filesystems,omitempty"`
}

// FSReport is the walk of one volume's filesystem.
type FSReport struct {
	Volume  string `json:"volume"` // /p1, /fs, /vg0-root (across disks for LVs)
	Type    string `json:"fs"`
	Entries int64  `json:"entries"`
	Skipped string `json:"skipped,omitempty"` // why it was not checked
	Error   string `json:"error,omitempty"`
}

// maxFaults bounds the faults listed per point; more are counted.
const maxFaults = 20

func (r *PointReport) fault(format string, args ...any) {
	r.OK = false
	if len(r.Faults) == maxFaults {
		r.Faults = append(r.Faults, "(more faults not listed)")
	}
	if len(r.Faults) < maxFaults {
		r.Faults = append(r.Faults, fmt.Sprintf(format, args...))
	}
}

// Verify checks points of vm: each point's manifest, chain and saved
// configuration files; each image's size and structure (header, backing
// file as recorded, every mapping table); every block of every disk
// against its SHA-256 (a point's own blocks are read, the blocks it takes
// from its parent must have the parent's digests, so a whole chain costs
// one read of what it stores); and, unless NoFilesystems, every guest
// filesystem opened and walked. ids selects points (with their ancestors,
// which they need); none means all. Faults are in the reports; the error
// is for failures to run at all.
func Verify(ctx context.Context, r *repo.Repo, vm string, ids []string, opts VerifyOptions) ([]*PointReport, error) {
	points, errs, err := r.Points(vm)
	if err != nil {
		return nil, err
	}
	var reports []*PointReport
	for _, e := range errs {
		reports = append(reports, &PointReport{Point: vm, Faults: []string{e.Error()}})
	}
	folds, err := r.Folds(vm)
	if err != nil {
		return nil, err
	}
	for _, f := range folds {
		reports = append(reports, &PointReport{Point: vm + "/" + f.Into,
			Faults: []string{fmt.Sprintf("the merge of %s into it was interrupted; `vmmount prune` or the next backup finishes it", f.Point)}})
	}
	want := map[string]bool{}
	byID := map[string]*repo.Point{}
	for _, p := range points {
		byID[p.ID] = p
	}
	for _, id := range ids {
		p := byID[id]
		if p == nil {
			return nil, fmt.Errorf("%s/%s: %w", vm, id, repo.ErrNoPoint)
		}
		for ; p != nil; p = byID[p.Manifest.Parent] {
			want[p.ID] = true
		}
	}
	hashes := map[string]map[string]*repo.BlockHashes{} // point -> target -> verified list
	bad := map[string]bool{}
	for _, p := range points { // oldest first: parents before children
		if len(ids) > 0 && !want[p.ID] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return reports, err
		}
		rep := &PointReport{Point: p.Ref(), OK: true}
		reports = append(reports, rep)
		if par := p.Manifest.Parent; par != "" && (byID[par] == nil || bad[par]) {
			rep.fault("its parent point %s is missing or damaged", par)
		}
		hashes[p.ID] = verifyPoint(ctx, r, p, hashes[p.Manifest.Parent], rep, opts)
		if err := ctx.Err(); err != nil {
			return reports, err
		}
		if !rep.OK {
			bad[p.ID] = true
		}
	}
	return reports, nil
}

// verifyPoint checks one point given its parent's verified hash lists,
// and returns its own.
func verifyPoint(ctx context.Context, r *repo.Repo, p *repo.Point, parent map[string]*repo.BlockHashes, rep *PointReport, opts VerifyOptions) map[string]*repo.BlockHashes {
	if _, err := r.Chain(p); err != nil {
		rep.fault("%v", err)
	}
	for name, want := range p.Manifest.Config.Files {
		b, err := os.ReadFile(p.Path(name))
		if err != nil {
			rep.fault("configuration file %s: %v", name, err)
			continue
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != want {
			rep.fault("configuration file %s: SHA-256 differs from the manifest's", name)
		}
	}
	out := map[string]*repo.BlockHashes{}
	var imgs []imagefmt.Image
	defer func() {
		for _, im := range imgs {
			im.Close()
		}
	}()
	var names []string
	for i := range p.Manifest.Disks {
		d := &p.Manifest.Disks[i]
		dr := DiskReport{Target: d.Target}
		h, err := verifyDisk(ctx, p, d, parent[d.Target], &dr, opts)
		if err != nil {
			rep.fault("disk %s: %v", d.Target, err)
		}
		if dr.BadBlocks > 0 {
			rep.fault("disk %s: %d block(s) do not read as they were backed up", d.Target, dr.BadBlocks)
		}
		if h != nil && err == nil && dr.BadBlocks == 0 {
			out[d.Target] = h
		}
		rep.Disks = append(rep.Disks, dr)
		if !opts.NoFilesystems {
			if im, err := imagefmt.OpenWith(p.Path(d.Image), imagefmt.Options{Format: d.Format}); err == nil {
				imgs = append(imgs, im)
				names = append(names, d.Target)
			}
		}
	}
	if !opts.NoFilesystems && len(imgs) > 0 {
		verifyFilesystems(ctx, imgs, names, rep)
	}
	return out
}

// verifyDisk checks one disk's image and blocks and returns its hash list.
func verifyDisk(ctx context.Context, p *repo.Point, d *repo.Disk, parent *repo.BlockHashes, dr *DiskReport, opts VerifyOptions) (*repo.BlockHashes, error) {
	img := p.Path(d.Image)
	st, err := os.Stat(img)
	if err != nil {
		return nil, err
	}
	if d.ImageSize != 0 && st.Size() != d.ImageSize {
		return nil, fmt.Errorf("%s is %d bytes, the manifest says %d", d.Image, st.Size(), d.ImageSize)
	}
	h, err := readHashes(p, d)
	if err != nil {
		return nil, err
	}
	// The image alone: its header, its backing file name as recorded,
	// and every mapping table (walked by Extents).
	top, err := imagefmt.OpenWith(img, imagefmt.Options{Format: d.Format, NoBacking: true})
	if err != nil {
		return nil, err
	}
	defer top.Close()
	info := top.Info()
	if info.BackingFilename != d.Backing {
		return nil, fmt.Errorf("%s names backing file %q, the manifest %q", d.Image, info.BackingFilename, d.Backing)
	}
	if d.Backing != "" && info.BackingFormat != imagefmt.FormatQcow2 && info.BackingFormat != imagefmt.FormatRaw {
		return nil, fmt.Errorf("%s: backing format %q", d.Image, info.BackingFormat)
	}
	if top.Size() != d.VirtualSize {
		return nil, fmt.Errorf("%s: virtual size %d, the manifest says %d", d.Image, top.Size(), d.VirtualSize)
	}
	if info.Dirty || info.Corrupt {
		return nil, fmt.Errorf("%s is marked dirty or corrupt", d.Image)
	}
	// The whole chain must open too (backing files present, no loops).
	full, err := imagefmt.OpenWith(img, imagefmt.Options{Format: d.Format})
	if err != nil {
		return nil, err
	}
	full.Close()
	if d.Backing != "" && parent == nil {
		return nil, errors.New("its parent's blocks could not be verified")
	}
	if err := checkBlocks(ctx, top, h, parent, dr, opts); err != nil {
		return nil, err
	}
	return h, nil
}
