// Package qemulock takes and tests the locks QEMU coordinates the users of
// an image file with: shared OFD locks on single bytes of the file
// (block/file-posix.c, raw_apply_lock_bytes). A process holds byte 100+p
// while it uses permission p and byte 200+p while it does not share it; p
// is 0 for consistent read and 1 for write. A QEMU that starts a VM on an
// image wants write and does not share it, so it refuses to start while
// someone holds byte 101 or 201, and it holds them itself while it runs.
package qemulock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The lock bytes.
const (
	PermRead     = 100
	PermWrite    = 101
	UnshareWrite = 201
)

// ErrUnsupported: the file's filesystem has no OFD locks, so there is
// nothing to coordinate with.
var ErrUnsupported = errors.New("no OFD locks on this filesystem")

// Hold takes a shared lock on each byte, as QEMU does; they last until f
// is closed. A byte another process holds exclusively fails (its error).
func Hold(f *os.File, bytes ...int64) error {
	for _, b := range bytes {
		lk := unix.Flock_t{Type: unix.F_RDLCK, Start: b, Len: 1}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
				return ErrUnsupported
			}
			return err
		}
	}
	return nil
}

// Held returns the first of the bytes another process holds a lock on,
// or 0.
func Held(f *os.File, bytes ...int64) (int64, error) {
	for _, b := range bytes {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Start: b, Len: 1}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
			return 0, fmt.Errorf("testing image locks: %w", err)
		}
		if lk.Type != unix.F_UNLCK {
			return b, nil
		}
	}
	return 0, nil
}
