package vmdk_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmmount/vmmount/imagefmt"
)

// TestParentLoop opens through imagefmt, which detects loops: a delta naming
// itself, and two deltas naming each other.
func TestParentLoop(t *testing.T) {
	dir := t.TempDir()
	desc := func(parent string) []byte {
		return []byte("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=1\ncreateType=\"monolithicFlat\"\nparentFileNameHint=\"" +
			parent + "\"\nRW 8 ZERO\n")
	}
	os.WriteFile(filepath.Join(dir, "self.vmdk"), desc("self.vmdk"), 0o644)
	os.WriteFile(filepath.Join(dir, "a.vmdk"), desc("b.vmdk"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.vmdk"), desc("a.vmdk"), 0o644)
	for _, n := range []string{"self.vmdk", "a.vmdk"} {
		if _, err := imagefmt.Open(filepath.Join(dir, n)); !errors.Is(err, imagefmt.ErrBackingLoop) {
			t.Errorf("%s: %v, want a backing loop error", n, err)
		}
	}
}
