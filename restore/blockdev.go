package restore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/progress"
)

// ErrInUse marks a block device that is mounted or held (a mounted
// partition of it, swap, device-mapper, md, another exclusive opener).
var ErrInUse = errors.New("block device in use")

// devChunk is the unit of a device restore: read (and checked), then
// written, or zeroed with BLKZEROOUT when the image holds no data there.
const devChunk = 4 << 20

// writeDevice restores d onto the block device dev.
func writeDevice(ctx context.Context, d *PointDisk, dev string, prog progress.Progress) (err error) {
	if err := checkDeviceFree(dev); err != nil {
		return err
	}
	// O_EXCL on a block device claims it: the open fails with EBUSY while
	// a filesystem is mounted on it or something else holds it.
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%s: %w (mounted, or held by device-mapper, md or another program)", dev, ErrInUse)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if size < d.VirtualSize {
		return fmt.Errorf("%s has %d bytes, the disk %s needs %d", dev, size, d.Target, d.VirtualSize)
	}
	defer func() {
		if err != nil {
			wipeEnds(f, d.VirtualSize)
			err = fmt.Errorf("%w (%s holds a partial restore; its first and last MiB were zeroed)", err, dev)
		}
	}()
	prog.Start("restoring "+d.Target, d.VirtualSize)
	defer prog.Finish()

	type chunk struct {
		off, n int64
		data   bool
		buf    []byte
		err    error
	}
	bufs := make(chan []byte, 3)
	for range cap(bufs) {
		bufs <- make([]byte, devChunk)
	}
	chunks := make(chan *chunk, cap(bufs))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(chunks)
		for span := int64(0); span < d.VirtualSize; span += 1 << 30 {
			n := min(1<<30, d.VirtualSize-span)
			exts, err := d.Image.Extents(span, n)
			if err != nil {
				chunks <- &chunk{err: err}
				return
			}
			for off := span; off < span+n; off += devChunk {
				c := &chunk{off: off, n: min(devChunk, span+n-off)}
				c.data = hasData(exts, c.off, c.n)
				if c.data {
					select {
					case c.buf = <-bufs:
					case <-ctx.Done():
						return
					}
					_, c.err = d.Image.ReadAt(c.buf[:c.n], c.off)
					if c.err == io.EOF {
						c.err = nil
					}
				}
				failed := c.err != nil // c belongs to the writer once sent
				select {
				case chunks <- c:
				case <-ctx.Done():
					return
				}
				if failed {
					return
				}
			}
		}
	}()
	for c := range chunks {
		if c.err == nil {
			c.err = ctx.Err()
		}
		if c.err == nil {
			if c.data {
				c.err = pwriteFull(int(f.Fd()), c.buf[:c.n], c.off)
			} else {
				c.err = zeroRange(f, c.off, c.n)
			}
		}
		if c.buf != nil {
			bufs <- c.buf
		}
		if c.err != nil {
			cancel()
			for range chunks {
			}
			return c.err
		}
		prog.Add(c.n)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.checked.checkRest(ctx); err != nil {
		return err
	}
	return f.Sync()
}

// hasData says whether any Data extent meets [off, off+n).
func hasData(exts []imagefmt.Extent, off, n int64) bool {
	for _, e := range exts {
		if e.Kind == imagefmt.Data && e.Off < off+n && e.Off+e.Len > off {
			return true
		}
	}
	return false
}

// zeroRange zeroes a range of a block device: BLKZEROOUT lets the device
// do it (WRITE ZEROES, or the kernel writes zero pages), falling back to
// writing zeros.
func zeroRange(f *os.File, off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r[0])))
	if e == 0 {
		return nil
	}
	zero := make([]byte, min(n, devChunk))
	for n > 0 {
		k := min(n, int64(len(zero)))
		if err := pwriteFull(int(f.Fd()), zero[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// wipeEnds zeroes the first and last MiB of what was being restored
// (partition tables, filesystem superblocks, the GPT backup header).
func wipeEnds(f *os.File, size int64) {
	n := min(int64(1<<20), size)
	zeroRange(f, 0, n)
	zeroRange(f, size-n, n)
	f.Sync()
}

// checkDeviceFree refuses a device that is mounted, has a mounted
// partition, is swap, or has holders (device-mapper, md), from
// /proc/self/mountinfo, /proc/swaps and /sys, with a message that says
// which; the exclusive open catches the rest.
func checkDeviceFree(dev string) error {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return err
	}
	devs := map[string]bool{devNum(st.Rdev): true}
	sys := fmt.Sprintf("/sys/dev/block/%s", devNum(st.Rdev))
	if parts, _ := filepath.Glob(sys + "/*/partition"); len(parts) > 0 {
		for _, p := range parts {
			if b, err := os.ReadFile(filepath.Join(filepath.Dir(p), "dev")); err == nil {
				devs[strings.TrimSpace(string(b))] = true
			}
		}
	}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 4 && devs[fields[2]] {
				return fmt.Errorf("%s: %w: mounted on %s", dev, ErrInUse, fields[4])
			}
		}
	}
	if holders, _ := os.ReadDir(sys + "/holders"); len(holders) > 0 {
		return fmt.Errorf("%s: %w: held by %s", dev, ErrInUse, holders[0].Name())
	}
	if b, err := os.ReadFile("/proc/swaps"); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fields := strings.Fields(line); len(fields) > 0 {
				var sst unix.Stat_t
				if unix.Stat(fields[0], &sst) == nil && devs[devNum(sst.Rdev)] {
					return fmt.Errorf("%s: %w: used as swap", dev, ErrInUse)
				}
			}
		}
	}
	return nil
}

func devNum(rdev uint64) string { return fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev)) }
