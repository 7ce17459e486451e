package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
)

// Point is a restore point opened for restoring, after its checks passed:
// every disk's image is open with its backing chain, and reads from it are
// checked against the backup's per-block digests.
type Point struct {
	Repo  *repo.Repo
	Point *repo.Point
	// Chain is the point and its ancestors, the point first.
	Chain []*repo.Point
	Disks []*PointDisk
}

// PointDisk is one disk of a point.
type PointDisk struct {
	repo.Disk
	// Path is the image file in the point directory.
	Path string
	// Image reads the disk as the guest saw it at the point, every block
	// checked against its digest on first read.
	Image imagefmt.Image

	checked *checkedImage
	raw     imagefmt.Image
}

// Name is "VM/id/target", for messages.
func (d *PointDisk) Name(p *Point) string { return p.Point.Ref() + "/" + d.Target }

// OpenPoint finds ref ("VM/id" or "VM/latest") in r and checks it before
// anything is restored from it: the manifests of the point and of its
// ancestors, each disk's image file (present, a regular file of the
// recorded size, opening as the recorded format and virtual size), its
// backing chain (every layer a file of an ancestor point of the same VM,
// never a path outside the repository), the per-block checksum list
// (matching the manifest's content digest and the disk size), and that no
// block the image leaves empty had data in the backup. A point that fails
// any of them is refused with an error wrapping repo.ErrCorrupt or
// fs.ErrNotExist, naming the file.
func OpenPoint(ctx context.Context, r *repo.Repo, ref string) (_ *Point, err error) {
	rp, err := r.Point(ref)
	if err != nil {
		return nil, err
	}
	chain, err := r.Chain(rp)
	if err != nil {
		return nil, err
	}
	p := &Point{Repo: r, Point: rp, Chain: chain}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := checkConfigNames(rp); err != nil {
		return nil, err
	}
	allowed, err := chainDirs(r, chain)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, d := range rp.Manifest.Disks {
		if seen[d.Target] {
			return nil, fmt.Errorf("point %s: %w: disk %s listed twice", rp.Ref(), repo.ErrCorrupt, d.Target)
		}
		seen[d.Target] = true
		pd, err := openPointDisk(ctx, p, d, allowed)
		if err != nil {
			return nil, err
		}
		p.Disks = append(p.Disks, pd)
	}
	return p, nil
}

// chainDirs returns the real paths of the chain's point directories.
func chainDirs(r *repo.Repo, chain []*repo.Point) (map[string]bool, error) {
	out := map[string]bool{}
	for _, c := range chain {
		d, err := filepath.EvalSymlinks(c.Dir)
		if err != nil {
			return nil, fmt.Errorf("point %s: %w", c.Ref(), err)
		}
		out[d] = true
	}
	return out, nil
}

func openPointDisk(ctx context.Context, p *Point, d repo.Disk, allowed map[string]bool) (*PointDisk, error) {
	ref := p.Point.Ref() + "/" + d.Target
	pd := &PointDisk{Disk: d, Path: p.Point.Path(d.Image)}
	st, err := os.Lstat(pd.Path)
	if err != nil {
		return nil, fmt.Errorf("point %s: image: %w", ref, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("point %s: %w: image %s is not a regular file", ref, repo.ErrCorrupt, pd.Path)
	}
	if d.ImageSize > 0 && st.Size() != d.ImageSize {
		return nil, fmt.Errorf("point %s: %w: image %s has %d bytes, the manifest says %d", ref, repo.ErrCorrupt, pd.Path, st.Size(), d.ImageSize)
	}
	if d.Hashes == "" {
		return nil, fmt.Errorf("point %s: %w: no checksum list for the disk", ref, repo.ErrCorrupt)
	}
	sums, err := repo.ReadBlockHashes(p.Point.Path(d.Hashes))
	if err != nil {
		return nil, fmt.Errorf("point %s: checksums: %w", ref, err)
	}
	if d.ContentSHA256 != "" && sums.Digest() != d.ContentSHA256 {
		return nil, fmt.Errorf("point %s: %w: checksum list %s does not match the manifest's content digest", ref, repo.ErrCorrupt, d.Hashes)
	}
	if sums.Size != d.VirtualSize {
		return nil, fmt.Errorf("point %s: %w: checksum list covers %d bytes, the disk has %d", ref, repo.ErrCorrupt, sums.Size, d.VirtualSize)
	}
	img, err := imagefmt.OpenWith(pd.Path, imagefmt.Options{Format: d.Format})
	if err != nil {
		return nil, fmt.Errorf("point %s: %w", ref, err)
	}
	pd.raw = img
	fail := func(err error) (*PointDisk, error) {
		img.Close()
		return nil, err
	}
	if img.Size() != d.VirtualSize {
		return fail(fmt.Errorf("point %s: %w: image %s has virtual size %d, the manifest says %d", ref, repo.ErrCorrupt, pd.Path, img.Size(), d.VirtualSize))
	}
	for i, layer := range img.Info().Chain() {
		real, err := filepath.EvalSymlinks(layer.Filename)
		if err != nil {
			return fail(fmt.Errorf("point %s: backing file %s: %w", ref, layer.Filename, err))
		}
		if !allowed[filepath.Dir(real)] {
			return fail(fmt.Errorf("point %s: %w: layer %d of the image is %s, not a file of this point or its ancestors", ref, repo.ErrCorrupt, i, layer.Filename))
		}
	}
	c, err := newCheckedImage(img, ref, sums)
	if err != nil {
		return fail(err)
	}
	if err := c.checkHoles(ctx); err != nil {
		return fail(err)
	}
	pd.checked, pd.Image = c, c
	return pd, nil
}

// checkConfigNames refuses configuration file names that are not plain
// names inside the point (ReadManifest checks the disks').
func checkConfigNames(p *repo.Point) error {
	c := p.Manifest.Config
	for _, n := range []string{c.DomainXML, c.NVRAM, c.Kernel, c.Initrd} {
		if n != "" && !plainName(n) {
			return fmt.Errorf("point %s: %w: configuration file %q is outside the point", p.Ref(), repo.ErrCorrupt, n)
		}
	}
	return nil
}

// Disk returns the point's disk with that target name.
func (p *Point) Disk(target string) (*PointDisk, error) {
	var have []string
	for _, d := range p.Disks {
		if d.Target == target {
			return d, nil
		}
		have = append(have, d.Target)
	}
	return nil, fmt.Errorf("point %s has no disk %q (it has %s): %w", p.Point.Ref(), target, strings.Join(have, ", "), os.ErrNotExist)
}

// ConfigFile reads a configuration file of the point (Config.DomainXML,
// NVRAM, Kernel, Initrd), checking it against the digest the manifest
// records for it.
func (p *Point) ConfigFile(name string) ([]byte, error) {
	if name == "" || !plainName(name) {
		return nil, fmt.Errorf("point %s: %w: configuration file %q", p.Point.Ref(), repo.ErrCorrupt, name)
	}
	f, err := os.Open(p.Point.Path(name))
	if err != nil {
		return nil, fmt.Errorf("point %s: %w", p.Point.Ref(), err)
	}
	defer f.Close()
	const maxConfig = 1 << 30 // NVRAM and kernels are megabytes; a domain XML kilobytes
	b, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfig {
		return nil, fmt.Errorf("point %s: %w: %s is larger than %d bytes", p.Point.Ref(), repo.ErrCorrupt, name, maxConfig)
	}
	if want, ok := p.Point.Manifest.Config.Files[name]; ok {
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != want {
			return nil, fmt.Errorf("point %s: %w: %s does not match its SHA-256 in the manifest", p.Point.Ref(), repo.ErrCorrupt, name)
		}
	}
	return b, nil
}

// Close closes the images.
func (p *Point) Close() error {
	var errs []error
	for _, d := range p.Disks {
		if d.raw != nil {
			errs = append(errs, d.raw.Close())
		}
	}
	p.Disks = nil
	return errors.Join(errs...)
}

// plainName accepts one harmless path component (as the repository does).
func plainName(n string) bool {
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
