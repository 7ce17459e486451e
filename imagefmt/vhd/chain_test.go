package vhd_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/imagefmt/vhd"
)

// TestParentLoop opens through imagefmt, which detects loops: a child naming
// itself, and two children naming each other.
func TestParentLoop(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "self.vhd"), vhd.DiffNamingParent(`.\self.vhd`), 0o644)
	os.WriteFile(filepath.Join(dir, "a.vhd"), vhd.DiffNamingParent(`.\b.vhd`), 0o644)
	os.WriteFile(filepath.Join(dir, "b.vhd"), vhd.DiffNamingParent(`.\a.vhd`), 0o644)
	for _, n := range []string{"self.vhd", "a.vhd"} {
		if _, err := imagefmt.Open(filepath.Join(dir, n)); !errors.Is(err, imagefmt.ErrBackingLoop) {
			t.Errorf("%s: %v, want a backing loop error", n, err)
		}
	}
}
