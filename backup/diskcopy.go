package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/imagefmt/qcow2"
	"github.com/vmmount/vmmount/internal/progress"
)

// blockSize is the unit of everything a point stores: the qcow2 cluster of
// its images, the block of its hash list (repo.HashBlockSize) and, by
// default, the granularity of libvirt's dirty bitmaps.
const blockSize = repo.HashBlockSize

// Range is a byte range of a disk.
type Range struct{ Off, Len int64 }

// ReadPlan says which parts of a source disk hold what a point must look
// at. Ranges returns, sorted, the ranges within [off, off+n) to read;
// everything else is, when Inherit is false, known to read as zeros (holes
// of a full or hash-compared copy) or, when Inherit is true, known to be
// unchanged since the parent point (a checkpoint's clean blocks).
type ReadPlan struct {
	Ranges  func(off, n int64) ([]Range, error)
	Inherit bool
}

// Source disks are read through this; an open image (imagefmt) or an NBD
// export both satisfy it.
type diskReader interface {
	ReadAt(p []byte, off int64) (int, error)
	Size() int64
}

// copySpec describes one disk copy into a point.
type copySpec struct {
	src  diskReader
	plan ReadPlan
	// parent is the same disk in the parent point: its hash list, and the
	// image name relative to the new image's directory. Nil: a full image.
	parent *parentDisk
	out    string // image path (in the partial point directory)
	format string // "qcow2" or "raw"
	// compress is "" or "zstd" (qcow2 only).
	compress string
	workers  int
	prog     progress.Progress
}

type parentDisk struct {
	hashes        *repo.BlockHashes
	backing       string // "../<parent id>/<image>"
	backingFormat string
}

// copyResult is what a disk copy produced.
type copyResult struct {
	hashes *repo.BlockHashes
	// changed is the bytes of guest data that differ from the parent (all
	// non-zero data for a full image).
	changed   int64
	imageSize int64 // file length
	allocated int64 // bytes the file takes on the host
}

// copyDisk writes spec.src into spec.out as a qcow2 (full or overlay) or
// sparse raw image and computes the disk's block hashes. It reads only what
// the plan names, several reads in flight, hashes and compresses on all
// cores, and writes in order. The image is fsynced; the caller publishes
// the directory it is in.
func copyDisk(ctx context.Context, spec copySpec) (_ *copyResult, err error) {
	size := spec.src.Size()
	if size <= 0 {
		return nil, fmt.Errorf("%s: disk of %d bytes", filepath.Base(spec.out), size)
	}
	if spec.parent != nil && spec.parent.hashes.Size != size {
		return nil, fmt.Errorf("internal error: parent hash list of %d bytes for a %d-byte disk", spec.parent.hashes.Size, size)
	}
	if spec.plan.Inherit && spec.parent == nil {
		return nil, errors.New("internal error: a changed-blocks plan needs a parent")
	}
	f, err := os.OpenFile(spec.out, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var qw *qcow2.Writer
	defer func() {
		if err != nil && qw != nil {
			qw.Abort() // a closed writer holds nothing either
		}
	}()

	c := &copier{spec: spec, size: size, hashes: repo.NewBlockHashes(size, blockSize), prog: progress.OrNop(spec.prog)}
	c.workers = spec.workers
	if c.workers <= 0 {
		// Hashing and compressing want a worker per core; reading wants
		// several requests in flight whatever the cores (an NBD export
		// answers scattered dirty blocks one round trip each).
		c.workers = max(runtime.GOMAXPROCS(0), minReaders)
	}
	if m, ok := spec.src.(mappedSource); ok {
		if b, err := m.Map(); err == nil && int64(len(b)) == size {
			c.mapped = b
		}
	}
	c.zeroSum = repo.ZeroSum(blockSize)
	if tail := size % blockSize; tail != 0 {
		c.tailZeroSum = repo.ZeroSum(tail)
	}
	switch spec.format {
	case imagefmt.FormatQcow2:
		opts := qcow2.CreateOptions{ClusterSize: blockSize, Compression: spec.compress}
		if spec.parent != nil {
			opts.BackingFile, opts.BackingFormat = spec.parent.backing, spec.parent.backingFormat
		}
		w, err := qcow2.NewWriter(f, size, opts)
		if err != nil {
			return nil, err
		}
		qw = w
		c.out = &qcow2Out{w: w}
		if spec.compress != "" {
			for range c.workers {
				comp, err := qcow2.NewCompressor(spec.compress, blockSize)
				if err != nil {
					return nil, err
				}
				c.comps = append(c.comps, comp)
			}
		}
	case imagefmt.FormatRaw:
		if spec.parent != nil || spec.compress != "" {
			return nil, errors.New("internal error: raw images are always full and uncompressed")
		}
		c.out = &rawOut{f: f, name: spec.out, size: size, wb: writeback{f: f}}
	default:
		return nil, fmt.Errorf("image format %q (want qcow2 or raw)", spec.format)
	}

	if err := c.run(ctx); err != nil {
		return nil, err
	}
	if err := c.out.close(ctx); err != nil {
		return nil, err
	}
	res := &copyResult{hashes: c.hashes, changed: c.changed.Load()}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	res.imageSize, res.allocated = st.Size, st.Blocks*512
	return res, f.Close()
}

// minReaders is the least number of chunks read at once.
const minReaders = 8
