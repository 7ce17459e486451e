package extwrite

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// dxLevels reads a directory's htree indirect_levels.
func dxLevels(t *testing.T, f *FS, dir uint32) int {
	t.Helper()
	n, err := f.readInode(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !f.indexed(n) {
		return -1
	}
	phys, err := f.mapBlock(n, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.st.read(phys)
	if err != nil {
		t.Fatal(err)
	}
	return int(b[disklayout.DxRootInfoOff+6])
}

// TestHtreeGrowth fills an indexed directory with long names until its
// tree grows a level (root entries moved into a new node), interior nodes
// split, and, with large_dir, a third level appears; without large_dir
// the full index is refused without writing anything. e2fsck checks the
// directory at every change of shape.
func TestHtreeGrowth(t *testing.T) {
	if testing.Short() {
		t.Skip("tens of thousands of entries")
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantFull bool
	}{
		{"1k-csum-largedir", []string{"-b", "1024", "-O", "large_dir,metadata_csum", "-N", "60000", "-I", "128"}, false},
		{"1k-nocsum", []string{"-b", "1024", "-O", "^metadata_csum", "-N", "60000", "-I", "128"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for i := range 40 {
				files[fmt.Sprintf("d/seed-%03d", i)] = ""
			}
			img := mkfsImage(t, "mkfs.ext4", tc.args, 96, files)
			exec.Command("e2fsck", "-fyD", img).Run()
			fsck(t, img, "fresh")
			long := strings.Repeat("n", 230)
			count, lastLevels, nodes := 0, -2, 0
			checked := -2
			for batch := 0; batch < 40; batch++ {
				f, _ := openImage(t, img)
				d, err := lookupPath(f, "/d")
				if err != nil {
					t.Fatal(err)
				}
				if l := dxLevels(t, f, d); l != lastLevels {
					t.Logf("after %d names: %d indirect levels", count, l)
					lastLevels = l
					if l == 2 {
						fsck(t, img, fmt.Sprintf("three levels after %d names", count))
						return
					}
				}
				if lastLevels != checked {
					// The tree just changed shape: check it.
					fsck(t, img, fmt.Sprintf("after %d names", count))
					checked = lastLevels
				}
				full := false
				for range 1500 {
					_, err := f.Create(d, fmt.Sprintf("%s-%06d", long, count), Attr{Perm: 0o644}, content(nil))
					if errors.Is(err, ErrRefused) && strings.Contains(err.Error(), "index is full") {
						full = true
						break
					}
					if err != nil {
						t.Fatalf("name %d: %v", count, err)
					}
					count++
				}
				for _, e := range f.Events() {
					if e.Op == OpHtreeNode {
						nodes++
					}
				}
				if full {
					if !tc.wantFull {
						t.Fatalf("index full after %d names", count)
					}
					t.Logf("index full after %d names, %d index blocks added", count, nodes)
					return
				}
				apply(t, f, img)
				if batch%8 == 7 {
					fsck(t, img, fmt.Sprintf("after %d names", count))
				}
			}
			t.Fatalf("after %d names the tree has %d levels", count, lastLevels)
		})
	}
}
