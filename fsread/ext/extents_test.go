package ext

import (
	"io/fs"

	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/testimages"
)

// TestExtentsAgainstSeekData compares File.Extents of every regular file
// with the data ranges the kernel reports through SEEK_DATA/SEEK_HOLE on
// a fresh read-only mount (where unwritten extents are holes, as they are
// for Extents).
func TestExtentsAgainstSeekData(t *testing.T) {
	img, _ := fixture(t, variantByName(t, "ext4"))
	f := openImage(t, img)
	mnt, cleanup, err := testimages.LoopMount(img, 0, 0, false, "", "ro")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	files := 0
	iofs := fsys.NewFS(f)
	err = fs.WalkDir(iofs, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasPrefix(p, "big/") {
			return err
		}
		files++
		ino, err := iofs.Resolve("extents", p, false)
		if err != nil {
			return err
		}
		fl, err := f.Open(ino)
		if err != nil {
			return err
		}
		got, err := fl.Extents()
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		if got == nil {
			got = []fsys.Range{}
		}
		want, err := seekData(filepath.Join(mnt, p))
		if err != nil {
			return err
		}
		if len(got) != len(want) {
			t.Errorf("%s: extents %v, kernel %v", p, got, want)
			return nil
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: extents %v, kernel %v", p, got, want)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files compared", files)
	if files < 20 {
		t.Errorf("only %d files compared", files)
	}
}

// seekData lists a host file's data ranges with SEEK_DATA/SEEK_HOLE.
func seekData(name string) ([]fsys.Range, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_NOATIME, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	out := []fsys.Range{}
	for off := int64(0); off < st.Size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break
		}
		if err != nil {
			return nil, err
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		out = append(out, fsys.Range{Off: start, Len: end - start})
		off = end
	}
	return out, nil
}
