package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/testimages"
)

// testClock returns a clock that moves an hour on each call, so each point
// of a test gets its own id.
func testClock() func() time.Time {
	t := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Hour)
		return t
	}
}

func newRepo(t *testing.T) *repo.Repo {
	t.Helper()
	r, err := repo.OpenOrInit(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// qemuCheck runs qemu-img check on a point's image (and its chain).
func qemuCheck(t *testing.T, image string) {
	t.Helper()
	if out, err := testimages.Run("qemu-img", "check", image); err != nil {
		t.Errorf("qemu-img check %s: %v\n%s", image, err, out)
	}
}

// qemuCompare checks that image reads the same as want (any format).
func qemuCompare(t *testing.T, image, want string) {
	t.Helper()
	if out, err := testimages.Run("qemu-img", "compare", image, want); err != nil {
		t.Errorf("qemu-img compare %s %s: %v\n%s", image, want, err, out)
	}
}

// copySparse copies a raw image keeping holes (the state of a source disk
// at a point's time, for later comparison).
func copySparse(t *testing.T, src, dst string) {
	t.Helper()
	testimages.MustRun(t, "cp", "--sparse=always", src, dst)
}

// writeGuestFiles mounts an ext4 raw image read-write and applies changes:
// content for each path, "" deletes.
func writeGuestFiles(t *testing.T, raw string, files map[string]string) {
	t.Helper()
	dir, cleanup, err := testimages.LoopMount(raw, 0, 0, true, "ext4", "")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if content == "" {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readGuestFile reads a file of an ext4 image (any format, with its chain)
// through qemu-img convert and a read-only loop mount.
func readGuestFiles(t *testing.T, image string, names ...string) map[string]string {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "check.raw")
	testimages.MustRun(t, "qemu-img", "convert", "-O", "raw", image, raw)
	if out, err := testimages.Run("e2fsck", "-fn", raw); err != nil {
		t.Errorf("%s: e2fsck -fn: %v\n%s", image, err, out)
	}
	dir, cleanup, err := testimages.LoopMount(raw, 0, 0, false, "ext4", "ro")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			out[n] = "<" + strings.TrimPrefix(err.Error(), dir) + ">"
			continue
		}
		out[n] = string(b)
	}
	return out
}

// readGuestFilesDirty is readGuestFiles for a crash-consistent point: the
// journal is replayed on a copy before reading, and e2fsck is not run.
func readGuestFilesDirty(t *testing.T, image string, names ...string) map[string]string {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "check.raw")
	testimages.MustRun(t, "qemu-img", "convert", "-O", "raw", image, raw)
	dir, cleanup, err := testimages.LoopMount(raw, 0, 0, true, "ext4", "")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			out[n] = "<" + err.Error() + ">"
			continue
		}
		out[n] = string(b)
	}
	return out
}
