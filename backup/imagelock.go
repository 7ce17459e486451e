package backup

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// QEMU coordinates the users of an image with shared OFD locks on single
// bytes of the file (block/file-posix.c, raw_apply_lock_bytes): a process
// holds byte 100+p while it uses permission p and byte 200+p while it
// refuses to share it. p is 0 for consistent read and 1 for write.
const (
	lockPermRead     = 100
	lockPermWrite    = 101
	lockUnshareWrite = 201
)

// imageLock is held while an image of a shut-off VM is copied: it tells a
// QEMU that wants to start the VM meanwhile that the image may not be
// written (QEMU then refuses to start: "Failed to get "write" lock"),
// so the copy cannot become inconsistent behind the backup's back.
type imageLock struct{ f *os.File }

// lockImage takes the lock, refusing an image a QEMU uses for writing.
func lockImage(path string) (*imageLock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	for _, b := range []int64{lockPermRead, lockUnshareWrite} {
		lk := unix.Flock_t{Type: unix.F_RDLCK, Start: b, Len: 1}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			f.Close()
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
				return &imageLock{}, nil // no OFD locks on this filesystem
			}
			return nil, fmt.Errorf("%s: %w: the image is locked by a running QEMU (%v)", path, ErrVMState, err)
		}
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: lockPermWrite, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: testing image locks: %w", path, err)
	}
	if lk.Type != unix.F_UNLCK {
		f.Close()
		return nil, fmt.Errorf("%s: %w: the image is in use by a running QEMU; back the VM up through libvirt instead", path, ErrVMState)
	}
	return &imageLock{f: f}, nil
}

func (l *imageLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
