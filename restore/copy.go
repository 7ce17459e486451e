package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// copyBuf is the read size of file content, per worker.
const copyBuf = 1 << 20

// fileJob is a regular file for a worker to write.
type fileJob struct {
	dir         *dirState
	name, guest string
	fs          fsys.FileSystem
	ino         uint64
	st          *fsys.Stat
	link        *linkState // set when the inode has more names
}

type worker struct {
	r   *restorer
	buf []byte
}

func (w *worker) run(ctx context.Context, j *fileJob) {
	r := w.r
	defer r.release(j.dir)
	if err := ctx.Err(); err != nil {
		r.linkDone(j.link, j.dir, j.name, 0, err)
		return
	}
	hostIno, err := w.write(ctx, j)
	switch {
	case errors.Is(err, errSkipped):
		r.c.skipped.Add(1)
	case err != nil:
		r.fail(j.guest, err)
	default:
		r.c.files.Add(1)
	}
	r.linkDone(j.link, j.dir, j.name, hostIno, err)
}

// write creates the file (under a temporary name when it replaces one),
// copies its data ranges and leaves holes where the guest file has them,
// sets its metadata and renames it into place. On any error the file is
// removed.
func (w *worker) write(ctx context.Context, j *fileJob) (hostIno uint64, err error) {
	r := w.r
	gf, err := j.fs.Open(j.ino)
	if err != nil {
		return 0, err
	}
	size := gf.Size()
	ranges, err := gf.Extents()
	if err != nil {
		return 0, err
	}
	if ranges == nil {
		ranges = []fsys.Range{{Off: 0, Len: size}}
	}
	dirfd := j.dir.fd
	made := j.name
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, made, flags, 0o600)
	if errors.Is(err, unix.EEXIST) {
		switch r.o.Existing {
		case Refuse:
			return 0, ErrExists
		case Skip:
			return 0, errSkipped
		}
		made = tmpName()
		fd, err = unix.Openat(dirfd, made, flags, 0o600)
	}
	if err != nil {
		return 0, err
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			unix.Unlinkat(dirfd, made, 0)
		}
	}()
	end, err := w.copyRanges(ctx, gf, fd, ranges, size)
	if err != nil {
		return 0, err
	}
	if end < size {
		if err := unix.Ftruncate(fd, size); err != nil {
			return 0, fmt.Errorf("extending to %d bytes: %w", size, err)
		}
	}
	if err := r.setMeta(fd, j.st, j.fs, j.ino, true); err != nil {
		return 0, err
	}
	if j.link != nil {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return 0, err
		}
		hostIno = st.Ino
	}
	err = unix.Close(fd)
	fd = -1
	if err != nil {
		return 0, err
	}
	if made != j.name {
		if err := unix.Renameat(dirfd, made, dirfd, j.name); err != nil {
			return 0, fmt.Errorf("replacing the existing entry: %w", err)
		}
	}
	return hostIno, nil
}

// copyRanges copies the guest file's data ranges to the same offsets of
// fd and returns where the last write ended.
func (w *worker) copyRanges(ctx context.Context, gf fsys.File, fd int, ranges []fsys.Range, size int64) (int64, error) {
	var end int64
	for _, rg := range ranges {
		off, stop := max(rg.Off, 0), min(rg.Off+rg.Len, size)
		for off < stop {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			n := min(int64(len(w.buf)), stop-off)
			k, rerr := gf.ReadAt(w.buf[:n], off)
			if k > 0 {
				wend, err := writeSparse(fd, w.buf[:k], off)
				if err != nil {
					return 0, err
				}
				end = max(end, wend)
				w.r.c.bytes.Add(int64(k))
				w.r.prog.Add(int64(k))
				off += int64(k)
			}
			if rerr == io.EOF {
				break // the reader says the file ends here: Size rules
			}
			if rerr != nil {
				return 0, rerr
			}
			if k == 0 {
				return 0, fmt.Errorf("%w: read of %d bytes at %d returned nothing", fsys.ErrCorrupt, n, off)
			}
		}
	}
	return end, nil
}

// sparseBlock is the unit in which all-zero data is left as a hole: the
// block size of common host filesystems. Readers do not all say where a
// guest file's holes are (and a guest may have written zeros), so zeros
// are found by looking, as cp --sparse=always does.
const sparseBlock = 4096

// writeSparse writes b at off, skipping the sparseBlock-aligned blocks
// that are all zero (the file was created empty, so they stay holes). It
// returns where the last write ended (0 if none).
func writeSparse(fd int, b []byte, off int64) (int64, error) {
	var wend int64
	for len(b) > 0 {
		// Up to the next aligned boundary.
		n := int(sparseBlock - off%sparseBlock)
		n = min(n, len(b))
		if isZero(b[:n]) {
			b, off = b[n:], off+int64(n)
			continue
		}
		// A run of blocks with data.
		end := n
		for end < len(b) {
			m := min(sparseBlock, len(b)-end)
			if isZero(b[end : end+m]) {
				break
			}
			end += m
		}
		if err := pwriteFull(fd, b[:end], off); err != nil {
			return 0, err
		}
		b, off = b[end:], off+int64(end)
		wend = off
	}
	return wend, nil
}

var zeroBlock [sparseBlock]byte

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err != nil {
			return fmt.Errorf("writing at %d: %w", off, err)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
