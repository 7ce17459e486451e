package ntfswrite

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/testimages"
)

// The property tests write into volumes that mkntfs made and ntfs-3g
// filled, built once and cached: directories of 0 to 20,000 entries (the
// big ones have index trees of two and three levels), names of every
// kind, resident and non-resident files, a hardlink, a named stream.
const fixtureVersion = "v1"

// dirSizes are the directories dirs/dN of a fixture, N entries each.
func dirSizes(l ntfsLayout) []int {
	if l.clusterSize == 4096 {
		return []int{0, 1, 40, 600, 5000, 20000}
	}
	return []int{0, 1, 40, 600, 3000}
}

// fixtureName is entry i of a fixture directory: numbered, of kinds that
// collate differently (case, accents, other scripts, long).
func fixtureName(i int) string {
	switch i % 7 {
	case 0:
		return fmt.Sprintf("file-%05d.txt", i)
	case 1:
		return fmt.Sprintf("FILE-%05d.TXT", i)
	case 2:
		return fmt.Sprintf("Éte-%05d-ñandú", i)
	case 3:
		return fmt.Sprintf("%05d-%s", i, strings.Repeat("long name ", 12+i%10))
	case 4:
		return fmt.Sprintf("日本語-%05d", i)
	case 5:
		return fmt.Sprintf("_%05d", i)
	}
	return fmt.Sprintf("Mixed.Case.%05d.Name", i)
}

// fixture is a built volume and the manifest of its ntfs-3g mount.
type fixture struct {
	img  string
	want *testimages.Manifest
}

func getFixture(t testing.TB, l ntfsLayout) fixture {
	t.Helper()
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "mkntfs", "ntfs-3g", "ntfsfix")
	dir, err := testimages.Cached("ntfswrite-"+l.name, fixtureVersion, func(dir string) error {
		return buildFixture(dir, l)
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := testimages.ReadJSON(filepath.Join(dir, "oracle.json"))
	if err != nil {
		t.Fatal(err)
	}
	return fixture{img: filepath.Join(dir, "fs.img"), want: m}
}

func buildFixture(dir string, l ntfsLayout) error {
	img := filepath.Join(dir, "fs.img")
	big := l
	big.sizeMiB *= 3
	old := time.Date(2019, 3, 4, 5, 6, 7, 800000000, time.UTC)
	err := makeNTFS(img, big, func(mnt string) error {
		p := func(s string) string { return filepath.Join(mnt, filepath.FromSlash(s)) }
		for _, n := range dirSizes(l) {
			d := p(fmt.Sprintf("dirs/d%d", n))
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			for i := range n {
				if err := os.WriteFile(filepath.Join(d, fixtureName(i)), nil, 0o644); err != nil {
					return err
				}
			}
		}
		files := map[string][]byte{
			"files/empty":      nil,
			"files/small.txt":  []byte("small resident file\n"),
			"files/medium.bin": pattern(5000, 7),
			"files/large.bin":  pattern(3<<20+123, 8),
			"files/Windows/System32/drivers/etc/hosts": []byte("127.0.0.1 localhost\n"),
		}
		for name, b := range files {
			if err := os.MkdirAll(filepath.Dir(p(name)), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p(name), b, 0o644); err != nil {
				return err
			}
			if err := os.Chtimes(p(name), old, old); err != nil {
				return err
			}
		}
		if err := os.Link(p("files/medium.bin"), p("files/medium-link.bin")); err != nil {
			return err
		}
		return unix.Setxattr(p("files/small.txt"), "user.stream", []byte("a named stream"), 0)
	})
	if err != nil {
		return err
	}
	m, err := scanNTFS3G(img)
	if err != nil {
		return err
	}
	return m.WriteJSON(filepath.Join(dir, "oracle.json"))
}

// scanNTFS3G is the manifest of an ntfs-3g read-only mount of img.
func scanNTFS3G(img string) (*testimages.Manifest, error) {
	mnt, err := os.MkdirTemp("", "ntfswrite-scan-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(mnt)
	umount, err := testimages.FuseMount(mnt, "ntfs-3g", "-o", "ro,no_detach,streams_interface=xattr", img, mnt)
	if err != nil {
		return nil, err
	}
	m, err := testimages.ScanDirWith(mnt, testimages.ScanOptions{ExtraXattrs: []string{testimages.XattrNTFSAttrib}})
	if uerr := umount(); err == nil {
		err = uerr
	}
	return m, err
}
