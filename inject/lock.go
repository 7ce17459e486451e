package inject

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// QEMU coordinates the users of an image with shared OFD locks on single
// bytes of the file (block/file-posix.c, raw_apply_lock_bytes): a process
// holds byte 100+p while it uses permission p and byte 200+p while it does
// not share it with others; p is 0 for consistent read and 1 for write. A
// QEMU that starts a VM on the image wants write and does not share it, so
// it refuses to start while someone holds byte 101 or 201; and it holds
// them itself while it runs.
const (
	lockPermRead     = 100
	lockPermWrite    = 101
	lockUnshareWrite = 201
)

// imageLock holds an image file open with QEMU's locks for a writer that
// shares nothing: no QEMU can start the VM meanwhile.
type imageLock struct {
	f    *os.File
	excl *os.File // a block device opened O_EXCL
	path string
}

// lockImage opens path (read-write when rw) and takes the locks, refusing
// an image another process writes or keeps from being written (a running
// VM, a backup, another vmmount).
func lockImage(path string, rw bool) (*imageLock, error) {
	flag := os.O_RDONLY
	if rw {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	for _, b := range []int64{lockPermRead, lockPermWrite, lockUnshareWrite} {
		lk := unix.Flock_t{Type: unix.F_RDLCK, Start: b, Len: 1}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			f.Close()
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
				// No OFD locks on this filesystem: nothing to
				// coordinate with; the libvirt checks remain.
				return lockImage0(path, flag)
			}
			return nil, refusef("%s is in use: a running VM or another program holds its lock (%v)", path, err)
		}
	}
	for _, b := range []int64{lockPermWrite, lockUnshareWrite} {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Start: b, Len: 1}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: testing image locks: %w", path, err)
		}
		if lk.Type != unix.F_UNLCK {
			f.Close()
			what := "writes to it"
			if b == lockUnshareWrite {
				what = "does not let others write to it"
			}
			return nil, refusef("%s is in use: another process (a running VM, a backup) %s", path, what)
		}
	}
	lk := &imageLock{f: f, path: path}
	if err := lk.claimDevice(); err != nil {
		f.Close()
		return nil, err
	}
	return lk, nil
}

// claimDevice opens a block device exclusively, as mount does: the kernel
// refuses while it is mounted, or held by device-mapper, md or another
// exclusive user, none of which take QEMU's locks.
func (l *imageLock) claimDevice() error {
	st, err := l.f.Stat()
	if err != nil || st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return err
	}
	x, err := os.OpenFile(l.path, os.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return refusef("%s is in use: mounted, or held by device-mapper, md or another program", l.path)
		}
		return err
	}
	l.excl = x
	return nil
}

func lockImage0(path string, flag int) (*imageLock, error) {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	lk := &imageLock{f: f, path: path}
	if err := lk.claimDevice(); err != nil {
		f.Close()
		return nil, err
	}
	return lk, nil
}

// release drops the locks.
func (l *imageLock) release() {
	if l == nil {
		return
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	if l.excl != nil {
		l.excl.Close()
		l.excl = nil
	}
}
