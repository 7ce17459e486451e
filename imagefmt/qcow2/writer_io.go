package qcow2

import (
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// appendBuf adds b to bufs, merging it into the last buffer when it follows
// it in memory (clusters of one read buffer), so pwritev gets few vectors.
func appendBuf(bufs [][]byte, b []byte) [][]byte {
	if n := len(bufs); n > 0 {
		last := bufs[n-1]
		if len(b) > 0 && cap(last)-len(last) >= len(b) &&
			unsafe.Add(unsafe.Pointer(unsafe.SliceData(last)), len(last)) == unsafe.Pointer(unsafe.SliceData(b)) {
			bufs[n-1] = last[:len(last)+len(b)]
			return bufs
		}
	}
	return append(bufs, b)
}

// pwritev writes bufs back to back at off, all of them.
func pwritev(f *os.File, bufs [][]byte, off int64) error {
	const iovMax = 1024
	fd := int(f.Fd())
	for len(bufs) > 0 {
		vec := bufs[:min(len(bufs), iovMax)]
		n, err := unix.Pwritev(fd, vec, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		off += int64(n)
		// Drop what was written; a short write leaves part of a buffer.
		for n > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
	}
	return nil
}

// startWriteback asks the kernel to begin writing [off, off+n) to disk now,
// without waiting (sync_file_range SYNC_FILE_RANGE_WRITE): the final fsync
// then finds little left to do, so writing the image overlaps with
// converting it instead of following it. Only a hint: errors are ignored,
// fsync reports real ones.
func startWriteback(f *os.File, off, n int64) {
	if n > 0 {
		_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
	}
}
