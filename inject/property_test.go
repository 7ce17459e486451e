package inject

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// TestPropertyRuns drives Run with random sources (files of 0 to a few
// MiB, nested directories, symlinks) into random guest directories, new
// ones with --parents, and replaces earlier files with --overwrite, on raw
// and qcow2 images of two layouts: e2fsck after every run, the kernel's
// view of everything at the end.
func TestPropertyRuns(t *testing.T) {
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "mkfs.ext4", "e2fsck", "qemu-img", "losetup", "mount")
	runs := 10
	if testing.Short() {
		runs = 3
	}
	for _, tc := range []struct {
		name, format string
		mkfs         []string
	}{
		{"ext2-1k-raw", "raw", []string{"-t", "ext2", "-b", "1024", "-I", "128"}},
		{"ext4-qcow2", "qcow2", []string{"-t", "ext4", "-b", "4096"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			raw := filepath.Join(dir, "disk.raw")
			if err := testimages.Truncate(raw, 96<<20); err != nil {
				t.Fatal(err)
			}
			testimages.MustRun(t, "mkfs.ext4", append(append([]string{"-q", "-F"}, tc.mkfs...), raw)...)
			img := raw
			if tc.format == "qcow2" {
				img = filepath.Join(dir, "disk.qcow2")
				testimages.MustRun(t, "qemu-img", "convert", "-O", "qcow2", raw, img)
			}
			orig := img + ".orig"
			testimages.MustRun(t, "cp", "--sparse=always", img, orig)
			rng := rand.New(rand.NewPCG(7, uint64(len(tc.name))))
			model := map[string][]byte{} // guest path -> content of files
			var files []string
			dirs := []string{"/fs"}
			for run := range runs {
				src := t.TempDir()
				var sources []string
				for i := range 1 + rng.IntN(4) {
					name := fmt.Sprintf("s%d-%d", run, i)
					if rng.IntN(3) == 0 {
						// A tree.
						for j := range 1 + rng.IntN(30) {
							p := filepath.Join(src, name, fmt.Sprintf("d%d", j%3), fmt.Sprintf("f%d", j))
							os.MkdirAll(filepath.Dir(p), 0o755)
							os.WriteFile(p, randBytes(rng, rng.IntN(20000)), 0o644)
						}
						os.Symlink("d0", filepath.Join(src, name, "link"))
					} else {
						os.WriteFile(filepath.Join(src, name), randBytes(rng, sizeOf(rng)), 0o640)
					}
					sources = append(sources, filepath.Join(src, name))
				}
				guest := dirs[rng.IntN(len(dirs))]
				parents := rng.IntN(2) == 0
				if parents {
					guest = path.Join(guest, fmt.Sprintf("new%d", run), "deeper")
				}
				o := Options{Target: Target{Images: []string{img}}, Sources: sources, GuestDir: guest, Parents: parents,
					UndoFile: filepath.Join(dir, fmt.Sprintf("run%d.undo", run)), Now: now}
				if len(files) > 0 && rng.IntN(2) == 0 {
					// Replace an earlier file: same name, new content.
					old := files[rng.IntN(len(files))]
					p := filepath.Join(src, path.Base(old))
					os.WriteFile(p, randBytes(rng, sizeOf(rng)), 0o600)
					o.Sources, o.GuestDir, o.Parents, o.Overwrite = []string{p}, path.Dir(old), false, true
				}
				res, err := Run(context.Background(), o)
				if err != nil {
					t.Fatalf("run %d into %s: %v", run, o.GuestDir, err)
				}
				for _, a := range res.Actions {
					switch a.Op {
					case ActCreate, ActReplace:
						model[a.Path] = readFile(t, a.Source)
						if a.Op == ActCreate {
							files = append(files, a.Path)
						}
					case ActMkdir:
						dirs = append(dirs, a.Path)
					}
				}
				checkImage(t, img, 0, 96<<20, fmt.Sprintf("run %d", run))
			}
			view := asRaw(t, img)
			mnt := mountView(t, view, 0, 96<<20)
			for p, want := range model {
				got, err := os.ReadFile(filepath.Join(mnt, strings.TrimPrefix(p, "/fs/")))
				if err != nil || string(got) != string(want) {
					t.Errorf("%s: %d bytes (%v), want %d", p, len(got), err, len(want))
				}
			}
			// Undo every run, newest first: the image is byte for byte
			// the empty filesystem again.
			for run := runs - 1; run >= 0; run-- {
				if _, err := Undo(context.Background(), filepath.Join(dir, fmt.Sprintf("run%d.undo", run)), UndoOptions{}); err != nil {
					t.Fatalf("undo run %d: %v", run, err)
				}
			}
			sameFile(t, img, orig, "after undoing every run")
		})
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func sizeOf(rng *rand.Rand) int {
	switch rng.IntN(5) {
	case 0:
		return 0
	case 1:
		return rng.IntN(100)
	case 2:
		return 1<<20 + rng.IntN(2<<20)
	}
	return rng.IntN(100000)
}
