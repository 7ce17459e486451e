package qcow2

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Small runs of data clusters (the scattered clusters of an incremental)
// bypass the host's page cache where the filesystem allows it: the image is
// opened a second time with O_DIRECT, and such runs are gathered in a
// staging buffer and written directRun bytes at a time. Big runs (a full
// image) go through the page cache, whose writeback the writer starts as it
// goes (startWriteback), and so do tables, compressed clusters and the
// header; no host cluster is written both ways.
//
// Why: scattered clusters make the kernel allocate a page-cache page for
// every 4 KiB and then write them out at fsync in small pieces; gathered
// direct writes skip both. Measured here (2 vCPUs, virtio disk, where a
// fresh page-cache page costs ~10 us): 30 MiB of scattered 64 KiB clusters
// in ~25 ms instead of 20-160 ms plus their fsync. For big runs the page
// cache was faster (a full backup of 2 GB: 1.2-1.5 s against 1.6 s
// direct, synchronous 2 MiB writes).
const directRun = 1 << 20

// directAlign is the alignment O_DIRECT asks of buffers, offsets and
// lengths on the filesystems it is used on (logical block size at most
// 4 KiB; larger ones answer EINVAL and the writer falls back).
const directAlign = 4096

type directOut struct {
	f        *os.File // nil once O_DIRECT was refused: w.f then
	stage    []byte   // directRun bytes, aligned
	stageOff int64    // host offset of stage[0]
	staged   int
}

// openDirect opens the image behind f again with O_DIRECT, or returns nil
// when the filesystem refuses it or the clusters are too small to align.
func openDirect(f *os.File, clusterSize int64) *directOut {
	if clusterSize%directAlign != 0 {
		return nil
	}
	d, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return &directOut{f: d}
}

func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign)) % directAlign
	return b[skip : skip+n : skip+n]
}

// writeData writes whole data clusters (bufs, back to back) at host offset
// off. Staged bytes reach the file at the latest in flushData.
func (w *Writer) writeData(bufs [][]byte, off int64) error {
	d := w.direct
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	if d != nil && d.staged > 0 && (n >= directRun || d.stageOff+int64(d.staged) != off) {
		if err := w.flushData(); err != nil {
			return err
		}
	}
	if d == nil || n >= directRun {
		if err := pwritev(w.f, bufs, off); err != nil {
			return err
		}
		w.writeback(off, w.cur*w.g.clusterSize)
		return nil
	}
	if d.stage == nil {
		d.stage = alignedBuf(directRun)
	}
	if d.staged == 0 {
		d.stageOff = off
	}
	for _, b := range bufs {
		for len(b) > 0 {
			k := copy(d.stage[d.staged:], b)
			d.staged += k
			b = b[k:]
			if d.staged == len(d.stage) {
				if err := w.flushData(); err != nil {
					return err
				}
				d.stageOff += int64(len(d.stage))
			}
		}
	}
	return nil
}

// flushData writes the staged bytes.
func (w *Writer) flushData() error {
	d := w.direct
	if d == nil || d.staged == 0 {
		return nil
	}
	off, n := d.stageOff, d.staged
	d.staged = 0
	return w.directWrite([][]byte{d.stage[:n]}, off)
}

// directWrite writes through O_DIRECT; where that is refused (EINVAL:
// an alignment the filesystem wants bigger) it writes through the page
// cache, and so do later writes (still gathered: the staging goes on).
func (w *Writer) directWrite(bufs [][]byte, off int64) error {
	d := w.direct
	if d.f != nil {
		err := directPwritev(d.f, bufs, off)
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
		d.f.Close()
		d.f = nil
	}
	return pwritev(w.f, bufs, off)
}

// directPwritev is pwritev, replaced in tests.
var directPwritev = pwritev

// closeDirect drops the O_DIRECT descriptor and whatever is staged (Close
// flushes first).
func (w *Writer) closeDirect() {
	if d := w.direct; d != nil {
		if d.f != nil {
			d.f.Close()
		}
		w.direct = nil
	}
}
