package restore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
)

// BlockError is a block of a restore point's disk whose content does not
// match the SHA-256 the backup recorded for it. It wraps repo.ErrCorrupt.
type BlockError struct {
	Disk  string // "web/20261125T120000Z/vda"
	Block int64
	Off   int64 // byte offset in the virtual disk
	Len   int64
	Hole  bool // the image holds no data there, yet the backup saw some
}

func (e *BlockError) Error() string {
	what := "content does not match the backup's checksum"
	if e.Hole {
		what = "image holds no data where the backup recorded some"
	}
	return fmt.Sprintf("%s: block %d (bytes %d-%d of the disk): %s", e.Disk, e.Block, e.Off, e.Off+e.Len-1, what)
}

func (e *BlockError) Unwrap() error { return repo.ErrCorrupt }

// checkedImage is an image whose reads are checked against the per-block
// digests of the point it belongs to (repo.BlockHashes): every block a read
// touches is hashed the first time and compared, then remembered as good
// in a bitmap (2 MiB for a 1 TiB disk at 64 KiB blocks). A read that only
// partly covers an unchecked block reads that whole block once more to
// hash it. The image files are not expected to change during a restore;
// what this catches is damage at rest.
type checkedImage struct {
	imagefmt.Image
	name string
	sums *repo.BlockHashes
	ok   []atomic.Uint64 // bit per block: checked and good
	pool sync.Pool
}

func newCheckedImage(img imagefmt.Image, name string, sums *repo.BlockHashes) (*checkedImage, error) {
	if sums.Size != img.Size() {
		return nil, fmt.Errorf("%s: %w: checksum list is for %d bytes, the image has %d", name, repo.ErrCorrupt, sums.Size, img.Size())
	}
	c := &checkedImage{Image: img, name: name, sums: sums, ok: make([]atomic.Uint64, (len(sums.Sums)+63)/64)}
	bs := int(sums.BlockSize)
	c.pool.New = func() any { b := make([]byte, 2*bs); return &b }
	return c, nil
}

func (c *checkedImage) isOK(b int64) bool { return c.ok[b/64].Load()&(1<<(b%64)) != 0 }
func (c *checkedImage) setOK(b int64)     { c.ok[b/64].Or(1 << (b % 64)) }

func (c *checkedImage) blockRange(b int64) (lo, hi int64) {
	lo = b * c.sums.BlockSize
	return lo, lo + c.sums.BlockLen(int(b))
}

// ReadAt reads from the image and checks every block the read touches.
func (c *checkedImage) ReadAt(p []byte, off int64) (int, error) {
	bs, size := c.sums.BlockSize, c.Size()
	if len(p) == 0 || off < 0 || off >= size {
		return c.Image.ReadAt(p, off)
	}
	end := min(off+int64(len(p)), size)
	first, last := off/bs, (end-1)/bs
	allOK := true
	for b := first; b <= last && allOK; b++ {
		allOK = c.isOK(b)
	}
	if allOK {
		return c.Image.ReadAt(p, off)
	}
	if last-first < 2 {
		// A small read (a filesystem reader's inode or directory
		// block): read its blocks whole, once, check them and copy the
		// part asked for.
		return c.readSmall(p, off, end, first, last)
	}
	n, err := c.Image.ReadAt(p, off)
	if n == 0 || (err != nil && err != io.EOF) {
		return n, err
	}
	end = off + int64(n)
	for b := off / bs; b*bs < end; b++ {
		if c.isOK(b) {
			continue
		}
		lo, hi := c.blockRange(b)
		if lo >= off && hi <= end {
			if sha256.Sum256(p[lo-off:hi-off]) != c.sums.Sums[b] {
				return 0, &BlockError{Disk: c.name, Block: b, Off: lo, Len: hi - lo}
			}
			c.setOK(b)
			continue
		}
		// An edge block the read covers only partly.
		if _, err := c.readSmall(p[max(lo, off)-off:min(hi, end)-off], max(lo, off), min(hi, end), b, b); err != nil && err != io.EOF {
			return 0, err
		}
	}
	return n, err
}

// readSmall serves [off, end) from the blocks first..last (at most two),
// read whole, checked and marked good.
func (c *checkedImage) readSmall(p []byte, off, end, first, last int64) (int, error) {
	bp := c.pool.Get().(*[]byte)
	defer c.pool.Put(bp)
	lo, _ := c.blockRange(first)
	_, hi := c.blockRange(last)
	buf := (*bp)[:hi-lo]
	if _, err := c.Image.ReadAt(buf, lo); err != nil && err != io.EOF {
		return 0, err
	}
	for b := first; b <= last; b++ {
		if c.isOK(b) {
			continue
		}
		blo, bhi := c.blockRange(b)
		if sha256.Sum256(buf[blo-lo:bhi-lo]) != c.sums.Sums[b] {
			return 0, &BlockError{Disk: c.name, Block: b, Off: blo, Len: bhi - blo}
		}
		c.setOK(b)
	}
	n := copy(p, buf[off-lo:end-lo])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// checkHoles checks, without reading, the blocks the image holds no data
// for: the backup must have seen zeros there. They are marked good, so a
// copy that skips holes checks everything it does not read.
func (c *checkedImage) checkHoles(ctx context.Context) error {
	bs := c.sums.BlockSize
	size := c.Size()
	zeroFull := repo.ZeroSum(bs)
	const span = 1 << 30
	for s := int64(0); s < size; s += span {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(span, size-s)
		exts, err := c.Image.Extents(s, n)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		// Runs of adjacent extents without data (unallocated and zero
		// ones may alternate).
		for i := 0; i < len(exts); {
			if exts[i].Kind == imagefmt.Data {
				i++
				continue
			}
			lo := exts[i].Off
			for i < len(exts) && exts[i].Kind != imagefmt.Data {
				i++
			}
			hi := exts[i-1].Off + exts[i-1].Len
			if err := c.checkHoleRun(lo, hi, zeroFull); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkHoleRun checks the blocks wholly inside [lo, hi), a range without
// data.
func (c *checkedImage) checkHoleRun(lo, hi int64, zeroFull [sha256.Size]byte) error {
	bs := c.sums.BlockSize
	for b := (lo + bs - 1) / bs; b*bs < hi; b++ {
		blo, bhi := c.blockRange(b)
		if bhi > hi {
			break
		}
		want := zeroFull
		if bhi-blo != bs {
			want = repo.ZeroSum(bhi - blo)
		}
		if c.sums.Sums[b] != want {
			return &BlockError{Disk: c.name, Block: b, Off: blo, Len: bhi - blo, Hole: true}
		}
		c.setOK(b)
	}
	return nil
}

// checkRest reads and checks every block not yet checked: after a copy
// that read what it needed, this finds nothing, but it makes the check
// complete whatever the copy's read pattern was.
func (c *checkedImage) checkRest(ctx context.Context) error {
	bp := c.pool.Get().(*[]byte)
	defer c.pool.Put(bp)
	for b := range int64(len(c.sums.Sums)) {
		if c.isOK(b) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		lo, hi := c.blockRange(b)
		if _, err := c.ReadAt((*bp)[:hi-lo], lo); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}
