package inject

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// batchBytes is how much is saved into the undo file (and synced) before
// the image is written: fewer syncs, bounded memory.
const batchBytes = 8 << 20

// forChunks calls fn with each piece of at most recordChunk bytes of the
// changes, at its offset in the disk (base is the volume's offset), with
// the bytes it will hold. buf is reused: fn must not keep data.
func forChunks(ctx context.Context, chs []change, base int64, fn func(off int64, data []byte) error) error {
	buf := make([]byte, recordChunk)
	for _, c := range chs {
		for done := int64(0); done < c.Len; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(recordChunk, c.Len-done)
			var b []byte
			if c.Src == nil {
				b = c.Data[done : done+n]
			} else {
				b = buf[:n]
				k := max(0, min(n, c.SrcLen-done))
				if k > 0 {
					m, err := c.Src.ReadAt(b[:k], c.SrcOff+done)
					if m < int(k) {
						if err == nil || err == io.EOF {
							err = io.ErrUnexpectedEOF
						}
						return fmt.Errorf("reading the content to write: %w", err)
					}
				}
				clear(b[k:])
			}
			if err := fn(base+c.Off+done, b); err != nil {
				return err
			}
			done += n
		}
	}
	return nil
}

// checkSpace refuses to start when dir's filesystem has less than need
// bytes free (plus a margin): the undo file, or a growing qcow2 image,
// must not run out of room half way.
func checkSpace(dir string, need int64, what string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("checking free space in %s: %w", dir, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need+(16<<20) {
		return refusef("%s needs %d bytes in %s, which has %d free", what, need, dir, free)
	}
	return nil
}

// fileSize is a file's length; for a block device, its size.
func fileSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size(), nil
	}
	return f.Seek(0, io.SeekEnd)
}

func fileDevIno(st fs.FileInfo) (uint64, uint64) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Dev), s.Ino
	}
	return 0, 0
}

// commit writes the changes with the undo file, verifies the result and
// rolls back on any failure.
func (v *volume) commit(ctx context.Context, hdr *undoHeader, undoPath string, chs []change, checks []check) error {
	var need int64
	for _, c := range chs {
		need += c.Len + (c.Len/recordChunk+1)*(recordHeaderLen+16)
	}
	if v.disk.format == "qcow2" {
		return v.commitQcow2(ctx, hdr, undoPath, chs, checks, need)
	}
	return v.commitRaw(ctx, hdr, undoPath, chs, checks, need)
}

// commitRaw writes into a raw image: every range's old bytes go into the
// undo file, synced, before the range is written.
func (v *volume) commitRaw(ctx context.Context, hdr *undoHeader, undoPath string, chs []change, checks []check, need int64) (err error) {
	id, err := imageID(v.disk.path, "raw", v.img.Size())
	if err != nil {
		return err
	}
	hdr.Image = id
	if err := checkSpace(filepath.Dir(undoPath), need, "the undo file"); err != nil {
		return err
	}
	f, err := os.OpenFile(v.disk.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	u, err := createUndo(undoPath, hdr)
	if err != nil {
		return err
	}
	written := false
	defer func() {
		if err == nil {
			return
		}
		if !written {
			u.abort()
			return
		}
		u.close()
		if errors.Is(err, errCrash) {
			return
		}
		err = v.rollback(undoPath, f, err)
	}()

	type pending struct {
		off  int64
		data []byte
	}
	var batch []pending
	var batchLen int64
	flush := func() error {
		if err := u.sync(); err != nil {
			return err
		}
		written = written || len(batch) > 0
		for _, p := range batch {
			if _, err := f.WriteAt(p.data, p.off); err != nil {
				return fmt.Errorf("%s: writing %d bytes at %d: %w", v.disk.path, len(p.data), p.off, err)
			}
		}
		batch, batchLen = batch[:0], 0
		return hook("raw-batch")
	}
	old := make([]byte, recordChunk)
	err = forChunks(ctx, chs, v.off, func(off int64, data []byte) error {
		o := old[:len(data)]
		if _, err := f.ReadAt(o, off); err != nil {
			return fmt.Errorf("%s: reading %d bytes at %d: %w", v.disk.path, len(o), off, err)
		}
		if err := u.add(spaceGuest, off, o, sha256.Sum256(o), sha256.Sum256(data), int64(len(data))); err != nil {
			return err
		}
		batch = append(batch, pending{off, append([]byte(nil), data...)})
		if batchLen += int64(len(data)); batchLen >= batchBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", v.disk.path, err)
	}
	if err := hook("before-verify"); err != nil {
		return err
	}
	if err := v.verify(f, checks); err != nil {
		return err
	}
	size, err := fileSize(f)
	if err != nil {
		return err
	}
	if err := u.commit(&undoCommit{Time: v.t.o.Now().UTC(), FileSize: size}); err != nil {
		return err
	}
	return u.close()
}

// rollback puts the image back from the undo file after a failure (cause)
// and says so.
func (v *volume) rollback(undoPath string, f *os.File, cause error) error {
	u, err := readUndo(undoPath)
	if err == nil {
		if v.disk.format == "qcow2" {
			_, err = restoreQcow2(u, f, true)
		} else {
			_, err = restoreRaw(u, f, true)
		}
	}
	if err == nil {
		err = appendUndone(undoPath, u.end, v.t.o.Now().UTC())
		if err != nil {
			return fmt.Errorf("%w; %w (the image was restored, but marking the undo file %s failed: %v)", cause, ErrRolledBack, undoPath, err)
		}
		return fmt.Errorf("%w; %w: the image is as it was", cause, ErrRolledBack)
	}
	return fmt.Errorf("%w; rolling back FAILED: %v; the undo file %s holds the old bytes: run `vmmount inject --undo %s` before using the VM", cause, err, undoPath, undoPath)
}

var errVerify = errors.New("verification failed")

// testHook, when set (tests only), is called at named points of a commit;
// an error it returns fails the commit there. errCrash makes the commit
// stop as if the process died: no rollback.
var testHook func(point string) error

var errCrash = errors.New("simulated crash")

func hook(point string) error {
	if testHook == nil {
		return nil
	}
	return testHook(point)
}
