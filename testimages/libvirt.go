package testimages

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
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
