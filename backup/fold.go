package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/imagefmt/qcow2"
)

// Folding: when a point X goes away (prune, forget) while the point C
// built on it stays, X's data must move into C so C stays readable. The
// protocol (crash-safe: a kill at any moment leaves every kept point
// readable):
//
//  1. Journal the fold (repo.BeginFold): from now on X is hidden, and the
//     next run of prune, forget or backup finishes the fold first.
//  2. For each disk of C that is an overlay on X's image: write C's own
//     clusters into X's image in place (qcow2.RW) - C reads the same
//     throughout, as C overlays exactly those clusters - then rename X's
//     image over C's. C's children name C's image, which now holds X's
//     and C's clusters over X's parent W: they read the same too.
//  3. Rewrite C's manifest: parent W, the new images' sizes.
//  4. Remove X, then the journal.
//
// A fold found half done is finished differently: X's image may have been
// written half way, so each disk still on X is rewritten into a fresh
// image from C's view of C and X (over W), checked against C's block
// hashes, and renamed over C's image. The same fresh rewrite is used when
// X's image cannot be written in place (raw), or has other children.

// foldHook, when set (tests), is called at each step of a fold; an error
// stops the fold there, as a crash would.
var foldHook func(step string) error

func foldStep(step string) error {
	if foldHook != nil {
		return foldHook(step)
	}
	return nil
}

// fold merges x into c, its child, journaled. inPlace allows step 2's
// in-place write (only when c is x's only child).
func fold(ctx context.Context, r *repo.Repo, x, c *repo.Point, inPlace bool) error {
	if c.Manifest.Parent != x.ID {
		return fmt.Errorf("internal error: %s is not the parent of %s", x.Ref(), c.Ref())
	}
	f := repo.Fold{Point: x.ID, Into: c.ID, Parent: x.Manifest.Parent}
	if err := r.BeginFold(x.VM, f); err != nil {
		return err
	}
	if err := foldStep("journaled"); err != nil {
		return err
	}
	return finishFold(ctx, r, x.VM, f, inPlace)
}

// recoverFolds finishes the folds a killed prune or forget left. Call with
// the VM's lock held.
func recoverFolds(ctx context.Context, r *repo.Repo, vm string) ([]string, error) {
	fs, err := r.Folds(vm)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, f := range fs {
		if err := finishFold(ctx, r, vm, f, false); err != nil {
			return done, fmt.Errorf("finishing the interrupted merge of %s/%s into %s: %w", vm, f.Point, f.Into, err)
		}
		done = append(done, fmt.Sprintf("finished merging %s/%s into %s", vm, f.Point, f.Into))
	}
	return done, nil
}

func finishFold(ctx context.Context, r *repo.Repo, vm string, f repo.Fold, inPlace bool) error {
	c, err := r.PointAny(vm, f.Into)
	if err != nil {
		return err
	}
	x, err := r.PointAny(vm, f.Point)
	if err != nil && !isNotExist(err) {
		return err
	}
	if c.Manifest.Parent != f.Point {
		// The manifest was rewritten already: only the removal is left.
		return endFold(r, vm, f, x)
	}
	m := *c.Manifest
	m.Disks = append([]repo.Disk(nil), c.Manifest.Disks...)
	for i := range m.Disks {
		d := &m.Disks[i]
		if d.Backing != "../"+f.Point+"/"+filepath.Base(d.Backing) {
			continue // not an overlay on x
		}
		var xd *repo.Disk
		if x != nil {
			for j := range x.Manifest.Disks {
				if "../"+f.Point+"/"+x.Manifest.Disks[j].Image == d.Backing {
					xd = &x.Manifest.Disks[j]
				}
			}
		}
		done, err := foldedAlready(c.Path(d.Image), d.Backing)
		if err != nil {
			return fmt.Errorf("disk %s of %s: %w", d.Target, c.Ref(), err)
		}
		if !done {
			if xd == nil {
				return fmt.Errorf("disk %s of %s: %w: its backing point %s lost the disk", d.Target, c.Ref(), repo.ErrCorrupt, f.Point)
			}
			if err := foldDisk(ctx, r, c, x, d, xd, inPlace); err != nil {
				return fmt.Errorf("disk %s of %s: %w", d.Target, c.Ref(), err)
			}
		}
		if err := foldStep("disk " + d.Target); err != nil {
			return err
		}
		if xd != nil {
			d.Backing = xd.Backing
		} else {
			// Done before a crash; the image knows its new backing.
			if d.Backing, err = backingOf(c.Path(d.Image)); err != nil {
				return err
			}
		}
		d.Changes = repo.ChangesMerged
		if st, err := os.Stat(c.Path(d.Image)); err == nil {
			d.ImageSize, d.StoredBytes = st.Size(), allocatedBytes(st)
		}
	}
	m.Parent = f.Parent
	m.ChainLength = max(1, m.ChainLength-1)
	if err := r.UpdateManifest(c, &m); err != nil {
		return err
	}
	if err := foldStep("manifest"); err != nil {
		return err
	}
	return endFold(r, vm, f, x)
}

// endFold removes the folded point, then the journal.
func endFold(r *repo.Repo, vm string, f repo.Fold, x *repo.Point) error {
	if x != nil {
		if err := r.Remove(x); err != nil {
			return err
		}
	}
	if err := foldStep("removed"); err != nil {
		return err
	}
	return r.EndFold(vm, f)
}

// foldedAlready reports whether the image no longer names backing.
func foldedAlready(img, backing string) (bool, error) {
	b, err := backingOf(img)
	if err != nil {
		return false, err
	}
	return b != backing, nil
}

func backingOf(img string) (string, error) {
	im, err := imagefmt.OpenWith(img, imagefmt.Options{NoBacking: true})
	if err != nil {
		return "", err
	}
	defer im.Close()
	return im.Info().BackingFilename, nil
}

// foldDisk moves x's disk xd under c's disk d: in place when allowed and
// possible, else by a fresh rewrite of c's image.
func foldDisk(ctx context.Context, r *repo.Repo, c, x *repo.Point, d, xd *repo.Disk, inPlace bool) error {
	ximg := x.Path(xd.Image)
	if inPlace && xd.Format == imagefmt.FormatQcow2 {
		err := commitInto(ctx, c.Path(d.Image), ximg)
		if err == nil {
			if err := foldStep("written " + d.Target); err != nil {
				return err
			}
			if err := os.Rename(ximg, c.Path(d.Image)); err != nil {
				return err
			}
			if err := repo.SyncDir(c.Dir); err != nil {
				return err
			}
			return repo.SyncDir(x.Dir)
		}
		if !errors.Is(err, imagefmt.ErrUnsupported) {
			return err
		}
	}
	return rewriteFolded(ctx, r, c, x, d, xd)
}

// commitInto writes the clusters the overlay img holds itself (data and
// zero clusters) into the image under it, base, in place.
func commitInto(ctx context.Context, img, base string) error {
	top, err := imagefmt.OpenWith(img, imagefmt.Options{NoBacking: true})
	if err != nil {
		return err
	}
	defer top.Close()
	rw, err := qcow2.OpenRW(base)
	if err != nil {
		return err
	}
	if rw.Size() != top.Size() {
		rw.Close()
		return fmt.Errorf("%w: %s is %d bytes, its overlay %d", imagefmt.ErrUnsupported, base, rw.Size(), top.Size())
	}
	exts, err := top.Extents(0, top.Size())
	if err != nil {
		rw.Close()
		return err
	}
	buf := make([]byte, 1<<20)
	for _, e := range exts {
		if e.Kind == imagefmt.Unallocated {
			continue
		}
		for off := e.Off; off < e.Off+e.Len; {
			if err := ctx.Err(); err != nil {
				rw.Close()
				return err
			}
			n := min(int64(len(buf)), e.Off+e.Len-off)
			if _, err := top.ReadAt(buf[:n], off); err != nil && err != io.EOF {
				rw.Close()
				return err
			}
			if _, err := rw.WriteAt(buf[:n], off); err != nil {
				rw.Close()
				return err
			}
			if err := foldStep("write"); err != nil {
				rw.Close()
				return err
			}
			off += n
		}
	}
	return rw.Close()
}

// rewriteFolded writes a fresh image for c's disk d holding what c and x
// hold over x's parent, checks it reads as c did (block hashes), and
// renames it over c's image.
func rewriteFolded(ctx context.Context, r *repo.Repo, c, x *repo.Point, d, xd *repo.Disk) error {
	src, err := imagefmt.OpenWith(c.Path(d.Image), imagefmt.Options{Format: d.Format})
	if err != nil {
		return err
	}
	defer src.Close()
	var pd *parentDisk
	if xd.Backing != "" {
		w, err := r.PointAny(c.VM, filepath.Base(filepath.Dir(xd.Backing)))
		if err != nil {
			return err
		}
		if pd, _, err = parentFor(w, nil, d.Target, d.VirtualSize); err != nil {
			return err
		}
		if pd == nil || pd.backing != xd.Backing {
			return fmt.Errorf("%w: %s's backing %s does not match point %s", repo.ErrCorrupt, x.Ref(), xd.Backing, w.Ref())
		}
	}
	// The blocks c and x hold themselves (layers 0 and 1); the rest is
	// x's parent's, or zeros without one.
	plan := ReadPlan{Inherit: pd != nil, Ranges: func(off, n int64) ([]Range, error) {
		exts, err := src.Extents(off, n)
		if err != nil {
			return nil, err
		}
		var out []Range
		for _, e := range exts {
			if e.Kind != imagefmt.Unallocated && e.Layer <= 1 {
				out = append(out, Range{e.Off, e.Len})
			}
		}
		return alignRanges(out, src.Size()), nil
	}}
	tmp := c.Path("." + d.Image + ".merge")
	os.Remove(tmp)
	res, err := copyDisk(ctx, copySpec{src: src, plan: plan, parent: pd, out: tmp, format: imagefmt.FormatQcow2, compress: d.Compression})
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if got := res.hashes.Digest(); got != d.ContentSHA256 {
		os.Remove(tmp)
		return fmt.Errorf("%w: the merged image of %s reads differently (content %s, the point's %s)", repo.ErrCorrupt, c.Ref(), got, d.ContentSHA256)
	}
	if err := os.Rename(tmp, c.Path(d.Image)); err != nil {
		os.Remove(tmp)
		return err
	}
	return repo.SyncDir(c.Dir)
}
