package backup

import (
	"fmt"
	"os"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
)

// chooseParent returns the point the next backup of vm is an incremental
// of and the length of its chain, or nil (and why) for a full one. The
// point still has to pass checkParent before anything is chained on it.
func chooseParent(r *repo.Repo, vm string, opts *Options) (*repo.Point, int, string, error) {
	if opts.Full {
		return nil, 0, "--full", nil
	}
	if opts.Format == imagefmt.FormatRaw {
		return nil, 0, "raw images are always full", nil
	}
	p, err := r.Latest(vm)
	if err != nil {
		if isNotExist(err) {
			return nil, 0, "first point of the VM", nil
		}
		return nil, 0, "", err
	}
	chain, err := r.Chain(p)
	if err != nil {
		return nil, 0, "", parentDamaged(p, err)
	}
	if len(chain) >= opts.MaxChain {
		return nil, 0, fmt.Sprintf("chain of %d points reached the limit of %d", len(chain), opts.MaxChain), nil
	}
	return p, len(chain), "", nil
}

func parentDamaged(p *repo.Point, err error) error {
	return fmt.Errorf("%w: %s: %v (run `vmmount verify %s`; `vmmount backup --full` starts a new chain)", ErrParentCorrupt, p.Ref(), err, p.Ref())
}

// parentHashes are the checked hash lists of a parent point, by disk
// target.
type parentHashes map[string]*repo.BlockHashes

// checkParent checks the disks of the parent chooseParent returned (which
// has read its chain already) and returns their hash lists.
func checkParent(p *repo.Point) (parentHashes, error) {
	hs, err := checkDisks(p)
	if err != nil {
		return nil, parentDamaged(p, err)
	}
	return hs, nil
}

// checkPoint is the quick check a point passes before an incremental is
// chained on it: its chain's manifests, each image's size as recorded, the
// image structure of the whole backing chain (headers and every mapping
// table, not the data), and the hash lists matching their digests (they
// are returned). Full hashing of the data is verify's job.
func checkPoint(r *repo.Repo, p *repo.Point) (parentHashes, error) {
	if _, err := r.Chain(p); err != nil {
		return nil, err
	}
	return checkDisks(p)
}

// checkDisks is checkPoint without the chain's manifests.
func checkDisks(p *repo.Point) (parentHashes, error) {
	hs := parentHashes{}
	for _, d := range p.Manifest.Disks {
		img := p.Path(d.Image)
		st, err := os.Stat(img)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Target, err)
		}
		if d.ImageSize != 0 && st.Size() != d.ImageSize {
			return nil, fmt.Errorf("disk %s: %s is %d bytes, the manifest says %d", d.Target, d.Image, st.Size(), d.ImageSize)
		}
		im, err := imagefmt.OpenWith(img, imagefmt.Options{Format: d.Format})
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Target, err)
		}
		size := im.Size()
		_, err = im.Extents(0, size)
		im.Close()
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Target, err)
		}
		if size != d.VirtualSize {
			return nil, fmt.Errorf("disk %s: image of %d bytes, the manifest says %d", d.Target, size, d.VirtualSize)
		}
		if hs[d.Target], err = readHashes(p, &d); err != nil {
			return nil, err
		}
	}
	return hs, nil
}

// readHashes reads a disk's hash list and checks it against the manifest.
func readHashes(p *repo.Point, d *repo.Disk) (*repo.BlockHashes, error) {
	if d.Hashes == "" {
		return nil, fmt.Errorf("disk %s: %w: no block hash list", d.Target, repo.ErrCorrupt)
	}
	h, err := repo.ReadBlockHashes(p.Path(d.Hashes))
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", d.Target, err)
	}
	if h.Size != d.VirtualSize || h.BlockSize != blockSize {
		return nil, fmt.Errorf("disk %s: %w: hash list for %d bytes in %d-byte blocks, disk of %d", d.Target, repo.ErrCorrupt, h.Size, h.BlockSize, d.VirtualSize)
	}
	if got := h.Digest(); got != d.ContentSHA256 {
		return nil, fmt.Errorf("disk %s: %w: hash list digest %s, the manifest says %s", d.Target, repo.ErrCorrupt, got, d.ContentSHA256)
	}
	return h, nil
}

// parentFor returns the parent disk of target for an image of size bytes,
// or nil when the disk must be stored whole (new disk, resized, another
// format). Its hash list is read unless hs has it already.
func parentFor(p *repo.Point, hs parentHashes, target string, size int64) (*parentDisk, *repo.Disk, error) {
	if p == nil {
		return nil, nil, nil
	}
	for i := range p.Manifest.Disks {
		d := &p.Manifest.Disks[i]
		if d.Target != target {
			continue
		}
		if d.VirtualSize != size || (d.Format != imagefmt.FormatQcow2 && d.Format != imagefmt.FormatRaw) {
			return nil, nil, nil
		}
		h := hs[target]
		if h == nil {
			var err error
			if h, err = readHashes(p, d); err != nil {
				return nil, nil, err
			}
		}
		return &parentDisk{hashes: h, backing: "../" + p.ID + "/" + d.Image, backingFormat: d.Format}, d, nil
	}
	return nil, nil, nil
}
