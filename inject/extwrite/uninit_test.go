package extwrite

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// TestUninitGroups fills filesystems whose later groups have uninitialized
// block and inode bitmaps (flex_bg with metadata_csum, uninit_bg with
// crc16 descriptors, meta_bg) until inodes and blocks come from those
// groups, and checks with e2fsck that the bitmaps built for them, the
// cleared flags and bg_itable_unused are what the kernel would write.
func TestUninitGroups(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"flexbg-csum", []string{"-b", "1024", "-N", "600"}},
		{"uninit-crc16", []string{"-b", "1024", "-N", "600", "-O", "^metadata_csum,uninit_bg"}},
		{"metabg", []string{"-b", "1024", "-N", "600", "-O", "meta_bg,^resize_inode"}},
		{"noflex", []string{"-b", "1024", "-N", "600", "-O", "^flex_bg"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testimages.RequireTools(t, "dumpe2fs")
			img := mkfsImage(t, "mkfs.ext4", tc.args, 64, map[string]string{"a/": ""})
			uninit := func() (b, i int) {
				out, _ := exec.Command("dumpe2fs", img).Output()
				b = strings.Count(string(out), "BLOCK_UNINIT")
				i = strings.Count(string(out), "INODE_UNINIT")
				return
			}
			b0, i0 := uninit()
			if b0 == 0 || i0 == 0 {
				t.Fatalf("fresh image has %d BLOCK_UNINIT and %d INODE_UNINIT groups", b0, i0)
			}
			for round := range 4 {
				f, _ := openImage(t, img)
				d, err := lookupPath(f, "/a")
				if err != nil {
					t.Fatal(err)
				}
				for i := range 120 {
					size := 300 << 10
					if i%20 != 0 {
						size = 100
					}
					if _, err := f.Create(d, fmt.Sprintf("r%d-%03d", round, i), Attr{Perm: 0o644}, content(pattern(size, i))); err != nil {
						t.Fatalf("round %d file %d: %v", round, i, err)
					}
				}
				apply(t, f, img)
				fsck(t, img, fmt.Sprintf("round %d", round))
			}
			b1, i1 := uninit()
			if b1 >= b0 || i1 >= i0 {
				t.Errorf("uninitialized groups: %d/%d blocks, %d/%d inodes before/after: the test did not reach them", b0, b1, i0, i1)
			}
			t.Logf("BLOCK_UNINIT groups %d -> %d, INODE_UNINIT %d -> %d", b0, b1, i0, i1)
		})
	}
}
