package ntfswrite

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

// BenchmarkInjectTree writes the same tree (2,000 files of 1 to 8 KiB in
// 20 directories and one 128 MiB file) into a fresh NTFS image, through
// the writer (staging, Finish, the changes written to the image file and
// synced) and through an ntfs-3g mount (cp -r, then umount, which returns
// once ntfs-3g has flushed), in the same run; it prints the ratio
// writer/ntfs-3g (below 1 is faster). Runs with VMMOUNT_BENCH=1.
func BenchmarkInjectTree(b *testing.B) {
	if os.Getenv("VMMOUNT_BENCH") != "1" {
		b.Skip("set VMMOUNT_BENCH=1")
	}
	testimages.RequireTools(b, "mkntfs", "ntfs-3g", "cp")
	src := b.TempDir()
	type file struct {
		dir, name string
		data      []byte
	}
	var files []file
	for i := range 2000 {
		files = append(files, file{fmt.Sprintf("dir%02d", i%20), fmt.Sprintf("file-%04d.dat", i), pattern(1024+i*7%7168, i)})
	}
	files = append(files, file{"dir00", "big.bin", pattern(128<<20, 1)})
	for _, f := range files {
		os.MkdirAll(filepath.Join(src, "tree", f.dir), 0o755)
		if err := os.WriteFile(filepath.Join(src, "tree", f.dir, f.name), f.data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	empty := filepath.Join(b.TempDir(), "empty.img")
	if err := makeNTFS(empty, ntfsLayout{"bench", 512, 512, 4096}, nil); err != nil {
		b.Fatal(err)
	}
	var ours, theirs time.Duration
	for b.Loop() {
		img := copyImage(b, empty)
		t0 := time.Now()
		f := openImage(b, img)
		top, err := f.Mkdir(RootRecord, "tree", Attr{})
		if err != nil {
			b.Fatal(err)
		}
		dirs := map[string]uint64{}
		for _, fl := range files {
			d, ok := dirs[fl.dir]
			if !ok {
				if d, err = f.Mkdir(top, fl.dir, Attr{}); err != nil {
					b.Fatal(err)
				}
				dirs[fl.dir] = d
			}
			if _, err := f.Create(d, fl.name, Attr{}, content(fl.data)); err != nil {
				b.Fatal(err)
			}
		}
		apply(b, f, img)
		h, _ := os.OpenFile(img, os.O_RDWR, 0)
		h.Sync()
		h.Close()
		ours += time.Since(t0)

		img = copyImage(b, empty)
		mnt := b.TempDir()
		t0 = time.Now()
		umount, err := testimages.FuseMount(mnt, "ntfs-3g", "-o", "no_detach,big_writes", img, mnt)
		if err != nil {
			b.Fatal(err)
		}
		_, err = testimages.Run("cp", "-r", filepath.Join(src, "tree"), mnt)
		if uerr := umount(); err == nil {
			err = uerr
		}
		if err != nil {
			b.Fatal(err)
		}
		h, _ = os.OpenFile(img, os.O_RDWR, 0)
		h.Sync()
		h.Close()
		theirs += time.Since(t0)
	}
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "ratio")
	b.Logf("2,000 files and 128 MiB: writer %v, ntfs-3g %v, ratio %.2f", ours/time.Duration(b.N), theirs/time.Duration(b.N), ours.Seconds()/theirs.Seconds())
}
