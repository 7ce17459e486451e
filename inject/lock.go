package inject

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/internal/qemulock"
)

// imageLock holds the image with QEMU's locks (package qemulock) for a
// writer that shares nothing: no QEMU can start the VM meanwhile.
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
	if err := qemulock.Hold(f, qemulock.PermRead, qemulock.PermWrite, qemulock.UnshareWrite); err != nil {
		f.Close()
		if errors.Is(err, qemulock.ErrUnsupported) {
			// Nothing to coordinate with; the libvirt checks remain.
			return lockImage0(path, flag)
		}
		return nil, refusef("%s is in use: a running VM or another program holds its lock (%v)", path, err)
	}
	switch b, err := qemulock.Held(f, qemulock.PermWrite, qemulock.UnshareWrite); {
	case err != nil:
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	case b == qemulock.PermWrite:
		f.Close()
		return nil, refusef("%s is in use: another process (a running VM, a backup) writes to it", path)
	case b == qemulock.UnshareWrite:
		f.Close()
		return nil, refusef("%s is in use: another process (a running VM, a backup) does not let others write to it", path)
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
