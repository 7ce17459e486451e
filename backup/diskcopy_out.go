package backup

import (
	"context"
	"fmt"
	"os"

	"github.com/vmmount/vmmount/imagefmt/qcow2"
)

// qcow2Out streams clusters through a qcow2.Writer.
type qcow2Out struct{ w *qcow2.Writer }

func (o *qcow2Out) write(j *copyJob) error {
	return o.w.WriteClusters(j.first, j.clusters)
}

func (o *qcow2Out) close(ctx context.Context) error { return o.w.Close(ctx) }

// rawOut writes a sparse raw image: the file starts empty, data pages are
// written, all-zero 4 KiB pages are skipped so they stay holes.
type rawOut struct {
	f    *os.File
	name string
	size int64
}

const rawPage = 4096

func (o *rawOut) write(j *copyJob) error {
	base := j.first * blockSize
	for k, cl := range j.clusters {
		if cl.Kind != qcow2.ClusterData && cl.Kind != qcow2.ClusterCompressed {
			continue
		}
		blk := j.buf[int64(k)*blockSize : int64(k+1)*blockSize]
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
