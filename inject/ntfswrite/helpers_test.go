package ntfswrite

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

// ntfsLayout is how mkntfs makes a test volume.
type ntfsLayout struct {
	name        string
	sizeMiB     int64
	sectorSize  int
	clusterSize int
}

var layouts = []ntfsLayout{
	{"c4k", 48, 512, 4096},
	{"c512", 32, 512, 512},
	{"s4k-c64k", 192, 4096, 65536},
}

// mkntfs makes an NTFS volume image and, when populate is set, fills it
// through an ntfs-3g mount.
func mkntfs(t testing.TB, l ntfsLayout, populate func(mnt string) error) string {
	t.Helper()
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "mkntfs", "ntfs-3g", "ntfsfix")
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	if err := makeNTFS(img, l, populate); err != nil {
		t.Fatal(err)
	}
	return img
}

func makeNTFS(img string, l ntfsLayout, populate func(mnt string) error) error {
	if err := testimages.Truncate(img, l.sizeMiB<<20); err != nil {
		return err
	}
	if _, err := testimages.Run("mkntfs", "-F", "-Q", "-q", "-L", "inject", "-s", fmt.Sprint(l.sectorSize),
		"-c", fmt.Sprint(l.clusterSize), img); err != nil {
		return err
	}
	if populate == nil {
		return nil
	}
	mnt, err := os.MkdirTemp("", "ntfswrite-")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	umount, err := testimages.FuseMount(mnt, "ntfs-3g", "-o", "no_detach", img, mnt)
	if err != nil {
		return err
	}
	err = populate(mnt)
	if uerr := umount(); err == nil {
		err = uerr
	}
	return err
}

// copyImage copies an image (sparse) into a test's directory.
func copyImage(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "fs.img")
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v: %s", src, err, out)
	}
	return dst
}

// openImage opens an image file for a transaction.
func openImage(t testing.TB, img string) *FS {
	t.Helper()
	f, err := openFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func openFile(img string) (*FS, error) {
	fh, err := os.Open(img)
	if err != nil {
		return nil, err
	}
	st, _ := fh.Stat()
	return Open(fh, st.Size(), Options{Name: "test"})
}

// apply finishes a transaction and writes it into the image file.
func apply(t testing.TB, f *FS, img string) []Change {
	t.Helper()
	if err := f.Finish(); err != nil {
		t.Fatal(err)
	}
	chs, err := f.Changes()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeChanges(img, chs); err != nil {
		t.Fatal(err)
	}
	return chs
}

func writeChanges(img string, chs []Change) error {
	w, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer w.Close()
	for _, c := range chs {
		buf := c.Data
		if !c.Metadata() {
			buf = make([]byte, c.Len)
			if _, err := c.Src.ReadAt(buf[:c.SrcLen], c.SrcOff); err != nil && err != io.EOF {
				return err
			}
		}
		if _, err := w.WriteAt(buf, c.Off); err != nil {
			return err
		}
	}
	return nil
}

// ntfsfix runs ntfsfix -n and fails the test unless it is happy.
func ntfsfix(t testing.TB, img, what string) {
	t.Helper()
	out, err := exec.Command("ntfsfix", "-n", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "was processed successfully") {
		t.Fatalf("%s: ntfsfix -n: %v\n%s", what, err, out)
	}
}

// content is an in-memory Content.
func content(b []byte) Content { return bytes.NewReader(b) }

func pattern(n, seed int) []byte { return testimages.Pattern(n, seed) }

// lookupPath resolves a slash path from the root in a transaction.
func lookupPath(f *FS, p string) (uint64, error) {
	num := uint64(RootRecord)
	for _, c := range strings.Split(strings.Trim(p, "/"), "/") {
		if c == "" || c == "." {
			continue
		}
		var err error
		if num, err = f.Lookup(num, c); err != nil {
			return 0, fmt.Errorf("%s: %w", p, err)
		}
	}
	return num, nil
}

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 123456700, time.UTC)
