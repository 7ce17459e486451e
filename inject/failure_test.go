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

// TestRollback fails commits part way (a source that changes after the
// plan, a failed verification) and expects the image back byte for byte,
// with the undo file marked as applied.
func TestRollback(t *testing.T) {
	raw, _, _ := gptFixture(t)
	for _, form := range []string{"raw", "qcow2"} {
		for _, point := range []string{"write", "before-verify"} {
			t.Run(form+"/"+point, func(t *testing.T) {
				img, _ := prepare(t, raw, form)
				orig := fileSum(t, img)
				src := sources(t)
				// Enough content for several undo batches.
				big := filepath.Join(src, "huge.bin")
				if err := os.WriteFile(big, make([]byte, 20<<20), 0o644); err != nil {
					t.Fatal(err)
				}
				n := 0
				testHook = func(p string) error {
					switch {
					case point == "write" && (p == "raw-batch" || p == "qcow2-write"):
						if n++; n == 2 {
							// The source changes under the writer.
							return os.WriteFile(filepath.Join(src, "fstab"), []byte("changed!"), 0o644)
						}
					case point == "before-verify" && p == point:
						return os.WriteFile(filepath.Join(src, "big.bin"), []byte("changed after writing"), 0o644)
					}
					return nil
				}
				defer func() { testHook = nil }()
				undo := filepath.Join(t.TempDir(), "x.undo")
				_, err := Run(context.Background(), Options{Target: Target{Images: []string{img}},
					Sources: []string{big, filepath.Join(src, "big.bin"), filepath.Join(src, "fstab")}, GuestDir: "/p2", UndoFile: undo, Now: now})
				if !errors.Is(err, ErrRolledBack) {
					t.Fatalf("Run = %v, want a rollback", err)
				}
				t.Logf("%v", err)
				if fileSum(t, img) != orig {
					t.Fatal("the image is not as it was after the rollback")
				}
				r, err := Undo(context.Background(), undo, UndoOptions{})
				if err != nil || !r.AlreadyUndone {
					t.Errorf("undo after a rollback: %+v, %v", r, err)
				}
			})
		}
	}
}

// TestInterruptedUndo stops a commit as a crash would (no rollback) and
// undoes it from the undo file alone.
func TestInterruptedUndo(t *testing.T) {
	raw, off, size := gptFixture(t)
	for _, form := range []string{"raw", "qcow2"} {
		t.Run(form, func(t *testing.T) {
			img, _ := prepare(t, raw, form)
			orig := img + ".orig"
			if _, err := testimages.Run("cp", "--sparse=always", img, orig); err != nil {
				t.Fatal(err)
			}
			src := sources(t)
			big := filepath.Join(src, "huge.bin")
			if err := os.WriteFile(big, make([]byte, 20<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			n := 0
			testHook = func(p string) error {
				if p == "raw-batch" || p == "qcow2-write" {
					if n++; n == 3 {
						return errCrash
					}
				}
				return nil
			}
			undo := filepath.Join(t.TempDir(), "x.undo")
			_, err := Run(context.Background(), Options{Target: Target{Images: []string{img}},
				Sources: []string{src}, GuestDir: "/p2", UndoFile: undo, Now: now})
			testHook = nil
			if !errors.Is(err, errCrash) {
				t.Fatalf("Run = %v, want the simulated crash", err)
			}
			r, err := Undo(context.Background(), undo, UndoOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Interrupted {
				t.Errorf("undo result %+v, want interrupted", r)
			}
			sameFile(t, img, orig, "after undoing an interrupted injection")
			checkImage(t, img, off, size, "after undoing an interrupted injection")
		})
	}
}

// TestUndoRefusesChangedImage: an image changed after the injection (as a
// booted VM would) is not undone.
func TestUndoRefusesChangedImage(t *testing.T) {
	raw, off, _ := gptFixture(t)
	img, _ := prepare(t, raw, "raw")
	src := sources(t)
	res, err := Run(context.Background(), Options{Target: Target{Images: []string{img}},
		Sources: []string{filepath.Join(src, "fstab")}, GuestDir: "/p2", UndoFile: filepath.Join(t.TempDir(), "u"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The superblock's mount count, as a mount would change it.
	if _, err := f.WriteAt([]byte{0x42}, off+1024+0x34); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sum := fileSum(t, img)
	_, err = Undo(context.Background(), res.UndoFile, UndoOptions{})
	if !errors.Is(err, ErrChanged) || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "was the VM started") {
		t.Fatalf("Undo = %v, want ErrChanged", err)
	}
	if fileSum(t, img) != sum {
		t.Fatal("a refused undo changed the image")
	}
}
