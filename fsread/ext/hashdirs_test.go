package ext

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/testimages"
)

// TestHashAlgorithms indexes a directory of UTF-8 names (bytes >= 0x80,
// where signed and unsigned hashing differ) with each hash algorithm and
// each signedness (set with debugfs, then e2fsck -D rebuilds the index),
// and looks every name up by hash.
func TestHashAlgorithms(t *testing.T) {
	testimages.RequireTools(t, "mkfs.ext4", "e2fsck", "debugfs")
	src := t.TempDir()
	dir := filepath.Join(src, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 300 {
		n := fmt.Sprintf("ñame-%03d-%s", i, strings.Repeat("é", i%7))
		names = append(names, n)
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, alg := range []string{"legacy", "half_md4", "tea"} {
		for _, unsigned := range []bool{false, true} {
			name := fmt.Sprintf("%s-unsigned=%v", alg, unsigned)
			t.Run(name, func(t *testing.T) {
				img := filepath.Join(t.TempDir(), "img")
				if err := testimages.Truncate(img, 8<<20); err != nil {
					t.Fatal(err)
				}
				testimages.MustRun(t, "mkfs.ext4", "-q", "-F", "-b", "1024", "-d", src, img)
				testimages.MustRun(t, "debugfs", "-w", "-R", "ssv def_hash_version "+alg, img)
				flags := "1" // EXT2_FLAGS_SIGNED_HASH
				if unsigned {
					flags = "2"
				}
				testimages.MustRun(t, "debugfs", "-w", "-R", "ssv flags "+flags, img)
				if _, err := testimages.Run("e2fsck", "-fyD", img); err != nil && !strings.Contains(err.Error(), "exit status 1") {
					t.Fatal(err)
				}
				testimages.MustRun(t, "e2fsck", "-fn", img)
				f := openImage(t, img)
				d, err := f.openDir(mustLookup(t, f, "d"))
				if err != nil {
					t.Fatal(err)
				}
				if !f.isIndexed(d) {
					t.Fatal("not indexed")
				}
				cb, err := f.dirBlock(d, 0)
				if err != nil {
					t.Fatal(err)
				}
				info, _ := disklayout.DecodeDxRootInfo(cb.data)
				if want := map[string]uint8{"legacy": 0, "half_md4": 1, "tea": 2}[alg]; info.HashVersion != want || f.unsignedH != unsigned {
					t.Fatalf("index hash %d unsigned %v; want %d %v", info.HashVersion, f.unsignedH, want, unsigned)
				}
				for _, n := range names {
					ino, ok, err := f.dxLookup(d, []byte(n), func(e dirent) bool { return string(e.name) == n })
					if err != nil || !ok || ino == 0 {
						t.Fatalf("dxLookup(%q) = %d, %v, %v", n, ino, ok, err)
					}
				}
			})
		}
	}
}
