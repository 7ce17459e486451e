package testimages

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// LibvirtSocket is the read-write socket of the system libvirtd that
// scripts/libvirt-up.sh starts (and `make test` runs before the tests).
const LibvirtSocket = "/run/libvirt/libvirt-sock"

// LibvirtConn returns a connection to qemu:///system through the local
// libvirtd, closed when the test ends. Without a daemon, it runs
// scripts/libvirt-up.sh once per test binary (as root, from a checkout), so
// `go test` of one package works without `make test`. When no daemon can be
// had it skips, or fails under CI=true.
func LibvirtConn(t testing.TB) *libvirt.Libvirt {
	t.Helper()
	RequireRoot(t)
	if err := libvirtShared(); err != nil {
		t.Fatalf("libvirt test lock: %v", err)
	}
	if _, err := os.Stat(LibvirtSocket); err != nil {
		if err := startLibvirt(); err != nil {
			Missing(t, "no libvirtd on %s (scripts/libvirt-up.sh starts one): %v", LibvirtSocket, err)
		}
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(LibvirtSocket), dialers.WithLocalTimeout(10*time.Second)))
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		Missing(t, "connecting to %s on %s: %v", libvirt.QEMUSystem, LibvirtSocket, err)
	}
	t.Cleanup(func() { l.Disconnect() })
	return l
}

var (
	startLibvirtOnce sync.Once
	startLibvirtErr  error
)

// startLibvirt runs scripts/libvirt-up.sh of the checkout the test runs in
// (found from the working directory, which go test sets to the package's).
func startLibvirt() error {
	startLibvirtOnce.Do(func() {
		script, err := findRepoFile("scripts/libvirt-up.sh")
		if err != nil {
			startLibvirtErr = err
			return
		}
		_, startLibvirtErr = Run(script)
	})
	return startLibvirtErr
}

// findRepoFile looks for rel in the directory holding go.mod, walking up
// from the working directory.
func findRepoFile(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, rel)
			if _, err := os.Stat(p); err != nil {
				return "", err
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory, so no %s", rel)
		}
		dir = parent
	}
}

// Test processes that use libvirtd hold a shared flock on libvirtLock for
// their whole life; a test that stops or restarts the daemon upgrades its
// process's hold to exclusive (LibvirtExclusive), so it waits until no
// other test binary (go test runs packages in parallel) is using the
// daemon, and none starts while it holds it.
const libvirtLock = "/run/vmmount-libvirt/tests.lock"

var libvirtHold struct {
	once sync.Once
	f    *os.File
	err  error
}

func libvirtShared() error {
	libvirtHold.once.Do(func() {
		if err := os.MkdirAll(filepath.Dir(libvirtLock), 0o755); err != nil {
			libvirtHold.err = err
			return
		}
		f, err := os.OpenFile(libvirtLock, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			libvirtHold.err = err
			return
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
			f.Close()
			libvirtHold.err = err
			return
		}
		libvirtHold.f = f
	})
	return libvirtHold.err
}

// LibvirtExclusive makes the test the only user of libvirtd among test
// processes until it ends: for tests that stop or restart the daemon. It
// waits (up to 30 minutes) for other test binaries that use libvirtd to
// finish.
func LibvirtExclusive(t testing.TB) {
	t.Helper()
	if err := libvirtShared(); err != nil {
		t.Fatalf("libvirt test lock: %v", err)
	}
	fd := int(libvirtHold.f.Fd())
	done := make(chan error, 1)
	go func() { done <- syscall.Flock(fd, syscall.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("libvirt test lock: %v", err)
		}
	case <-time.After(30 * time.Minute):
		t.Fatal("waited 30 minutes for other tests to stop using libvirtd")
	}
	t.Cleanup(func() { syscall.Flock(fd, syscall.LOCK_SH) })
}
