package inject

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// TestMultiDisk injects into the second of two images of one VM (paths
// /<disk>/<volume>/...) and leaves the first untouched.
func TestMultiDisk(t *testing.T) {
	raw, _, _ := gptFixture(t)
	a, _ := prepare(t, raw, "raw")
	b := filepath.Join(t.TempDir(), "data.raw")
	if err := testimages.Truncate(b, 32<<20); err != nil {
		t.Fatal(err)
	}
	testimages.MustRun(t, "mkfs.ext4", "-q", "-F", b)
	aSum := fileSum(t, a)
	src := filepath.Join(t.TempDir(), "note")
	os.WriteFile(src, []byte("on the second disk\n"), 0o644)
	res, err := Run(context.Background(), Options{Target: Target{Images: []string{a, b}}, Sources: []string{src},
		GuestDir: "/data/fs/notes", Parents: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if res.Image != b || res.Volume != "/data/fs" {
		t.Errorf("wrote %s volume %s, want %s /data/fs", res.Image, res.Volume, b)
	}
	if fileSum(t, a) != aSum {
		t.Error("the other disk changed")
	}
	if out, err := exec.Command("e2fsck", "-fn", b).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	if out, _ := exec.Command("debugfs", "-R", "cat /notes/note", b).Output(); string(out) != "on the second disk\n" {
		t.Errorf("debugfs reads %q", out)
	}
}
