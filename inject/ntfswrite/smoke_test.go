package ntfswrite

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSmoke(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			img := mkntfs(t, l, func(mnt string) error {
				return os.MkdirAll(filepath.Join(mnt, "dir"), 0o755)
			})
			f := openImage(t, img)
			dir, err := lookupPath(f, "dir")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Create(dir, "small.txt", Attr{Mtime: testTime}, content([]byte("hello\n"))); err != nil {
				t.Fatal(err)
			}
			big := pattern(300000, 1)
			if _, err := f.Create(RootRecord, "big.bin", Attr{}, content(big)); err != nil {
				t.Fatal(err)
			}
			sub, err := f.Mkdir(RootRecord, "NEWDIR", Attr{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Create(sub, "ünïcödé – long name.txt", Attr{}, content([]byte("x"))); err != nil {
				t.Fatal(err)
			}
			apply(t, f, img)
			ntfsfix(t, img, "smoke")
			checkImage(t, img)
		})
	}
}
