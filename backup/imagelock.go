package backup

import (
	"errors"
	"fmt"
	"os"

	"github.com/vmmount/vmmount/internal/qemulock"
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
	if err := qemulock.Hold(f, qemulock.PermRead, qemulock.UnshareWrite); err != nil {
		f.Close()
		if errors.Is(err, qemulock.ErrUnsupported) {
			return &imageLock{}, nil
		}
		return nil, fmt.Errorf("%s: %w: the image is locked by a running QEMU (%v)", path, ErrVMState, err)
	}
	if b, err := qemulock.Held(f, qemulock.PermWrite); err != nil || b != 0 {
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
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
