package backup

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/imagefmt/qcow2"
)

// qcow2Out streams clusters through a qcow2.Writer (which starts the
// writeback of what it wrote as it goes).
type qcow2Out struct{ w *qcow2.Writer }

func (o *qcow2Out) write(j *copyJob) error {
	return o.w.WriteClusters(j.first, j.clusters)
}

// writeback starts the kernel writing a raw image out while the copy goes
// on (sync_file_range, SYNC_FILE_RANGE_WRITE: no waiting), every
// writebackEvery bytes, so the fsync at the end has little left to do
// instead of the whole image.
type writeback struct {
	f       *os.File
	pending int64
}

const writebackEvery = 8 << 20

func (w *writeback) written(n int64) {
	if w.f == nil {
		return
	}
	if w.pending += n; w.pending >= writebackEvery {
		w.pending = 0
		unix.SyncFileRange(int(w.f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
}

func (o *qcow2Out) close(ctx context.Context) error { return o.w.Close(ctx) }

// rawOut writes a sparse raw image: the file starts empty, data pages are
// written, all-zero 4 KiB pages are skipped so they stay holes.
type rawOut struct {
	f    *os.File
	name string
	size int64
	wb   writeback
}

const rawPage = 4096

func (o *rawOut) write(j *copyJob) error {
	base := j.first * blockSize
	for k, cl := range j.clusters {
		if cl.Kind != qcow2.ClusterData && cl.Kind != qcow2.ClusterCompressed {
			continue
		}
		blk := j.blocks[k]
		end := min(blockSize, o.size-(base+int64(k)*blockSize))
		for p := int64(0); p < end; {
			if isZero(blk[p:min(p+rawPage, end)]) {
				p += rawPage
				continue
			}
			q := p
			for q < end && !isZero(blk[q:min(q+rawPage, end)]) {
				q += rawPage
			}
			q = min(q, end)
			off := base + int64(k)*blockSize + p
			if _, err := o.f.WriteAt(blk[p:q], off); err != nil {
				return fmt.Errorf("%s: writing at %d: %w", o.name, off, err)
			}
			p = q
		}
	}
	o.wb.written(j.n * blockSize)
	return nil
}

func (o *rawOut) close(ctx context.Context) error {
	if err := o.f.Truncate(o.size); err != nil {
		return fmt.Errorf("%s: %w", o.name, err)
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", o.name, err)
	}
	return nil
}
