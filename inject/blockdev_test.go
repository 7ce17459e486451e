package inject

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// TestBlockDevice injects into a disk that is a block device (a loop
// device over an ext4 image), refused while it is mounted, and undoes it
// back to the same bytes.
func TestBlockDevice(t *testing.T) {
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "mkfs.ext4", "losetup", "mount", "cmp")
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := testimages.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	testimages.MustRun(t, "mkfs.ext4", "-q", "-F", img)
	dev, detach, err := testimages.LoopAttach(img)
	if err != nil {
		t.Fatal(err)
	}
	defer detach()
	src := filepath.Join(t.TempDir(), "hello")
	os.WriteFile(src, []byte("hello block device\n"), 0o644)
	ctx := context.Background()
	o := Options{Target: Target{Images: []string{dev}}, Sources: []string{src}, GuestDir: "/fs",
		UndoFile: filepath.Join(t.TempDir(), "dev.undo"), Now: now}

	mnt := t.TempDir()
	if _, err := testimages.Run("mount", "-o", "ro", dev, mnt); err != nil {
		t.Fatal(err)
	}
	_, err = Run(ctx, o)
	testimages.Run("umount", mnt)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("while mounted: %v, want refused", err)
	}
	orig := img + ".orig"
	if _, err := testimages.Run("cp", "--sparse=always", img, orig); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Image != dev || res.Format != "raw" {
		t.Errorf("wrote %s (%s)", res.Image, res.Format)
	}
	if _, err := Undo(ctx, o.UndoFile, UndoOptions{}); err != nil {
		t.Fatal(err)
	}
	detach()
	sameFile(t, img, orig, "the disk behind the block device after undo")
}
