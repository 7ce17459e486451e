package testimages

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Benchmark images, shared by the fsread, mount and restore benchmarks
// (all compare with the kernel on the same image in the same run).

// BenchTreeImage is an ext4 image of real files, made by mkfs.ext4 -d from
// /usr/share, the Go toolchain and system libraries (about 2 GB and 75,000+
// entries where they exist), as raw and as qcow2.
func BenchTreeImage(tb testing.TB) (raw, qcow2 string) {
	tb.Helper()
	dir := Get(tb, "ext-bench-tree", "v1", func(dir string) error {
		stage := filepath.Join(dir, "stage")
		if err := os.Mkdir(stage, 0o755); err != nil {
			return err
		}
		defer os.RemoveAll(stage)
		for _, d := range []string{"/usr/share", "/usr/local/go", "/usr/lib/x86_64-linux-gnu", "/usr/lib/jvm"} {
			if _, err := os.Stat(d); err != nil {
				continue
			}
			dst := filepath.Join(stage, strings.ReplaceAll(strings.TrimPrefix(d, "/"), "/", "_"))
			// Hard links when /usr is on the same filesystem, else a copy.
			if _, err := Run("cp", "-al", d, dst); err != nil {
				os.RemoveAll(dst)
				if _, err := Run("cp", "-a", d, dst); err != nil {
					return err
				}
			}
		}
		img := filepath.Join(dir, "image")
		if err := Truncate(img, 5<<30); err != nil {
			return err
		}
		_, err := Run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-d", stage, img)
		return err
	})
	raw = filepath.Join(dir, "image")
	qcow2 = filepath.Join(dir, "image.qcow2")
	if _, err := os.Stat(qcow2); err != nil {
		if _, err := Run("qemu-img", "convert", "-O", "qcow2", raw, qcow2+".tmp"); err != nil {
			tb.Fatal(err)
		}
		if err := os.Rename(qcow2+".tmp", qcow2); err != nil {
			tb.Fatal(err)
		}
	}
	return raw, qcow2
}

// BenchBigFileImage is an ext4 image holding one 1 GiB file of
// incompressible data ("big"), as raw and as qcow2.
func BenchBigFileImage(tb testing.TB) (raw, qcow2 string) {
	tb.Helper()
	dir := Get(tb, "ext-bench-1g", "v1", func(dir string) error {
		stage := filepath.Join(dir, "stage")
		if err := os.Mkdir(stage, 0o755); err != nil {
			return err
		}
		defer os.RemoveAll(stage)
		f, err := os.Create(filepath.Join(stage, "big"))
		if err != nil {
			return err
		}
		rng := rand.New(rand.NewChaCha8([32]byte{1}))
		buf := make([]byte, 4<<20)
		for range 256 {
			for i := 0; i < len(buf); i += 8 {
				v := rng.Uint64()
				for k := range 8 {
					buf[i+k] = byte(v >> (8 * k))
				}
			}
			if _, err := f.Write(buf); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		img := filepath.Join(dir, "image")
		if err := Truncate(img, 1536<<20); err != nil {
			return err
		}
		if _, err := Run("mkfs.ext4", "-q", "-F", "-d", stage, img); err != nil {
			return err
		}
		_, err = Run("qemu-img", "convert", "-O", "qcow2", img, filepath.Join(dir, "image.qcow2"))
		return err
	})
	return filepath.Join(dir, "image"), filepath.Join(dir, "image.qcow2")
}

// DropCaches empties the host page cache, dentries and inodes, so a
// benchmark starts cold. Root only.
func DropCaches() error {
	Run("sync")
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}

// BenchUsrImage is a raw ext4 image of size bytes made by mkfs.ext4 -d
// from /usr/share, /usr/bin and /usr/libexec (hard links where /usr is on
// the same filesystem, else copies), the rest holes: realistic data,
// cached under key. extra, if set, adds files to the staging directory
// first.
func BenchUsrImage(tb testing.TB, key string, size int64, extra func(stage string) error) string {
	tb.Helper()
	RequireTools(tb, "mkfs.ext4", "qemu-img", "cp")
	dir := Get(tb, key, "v2", func(dir string) error {
		stage := filepath.Join(dir, "stage")
		if err := os.Mkdir(stage, 0o755); err != nil {
			return err
		}
		defer os.RemoveAll(stage)
		for _, d := range []string{"/usr/share", "/usr/bin", "/usr/libexec"} {
			if _, err := os.Stat(d); err != nil {
				continue
			}
			if _, err := Run("cp", "-al", d, stage+"/"); err != nil {
				if _, err := Run("cp", "-a", d, stage+"/"); err != nil {
					return err
				}
			}
		}
		if extra != nil {
			if err := extra(stage); err != nil {
				return err
			}
		}
		img := filepath.Join(dir, "image.raw")
		if err := Truncate(img, size); err != nil {
			return err
		}
		_, err := Run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-d", stage, img)
		return err
	})
	return filepath.Join(dir, "image.raw")
}

// Settle writes back every dirty page before a timed run, so neither side
// of a comparison pays for the other's (or a neighbour's) writeback.
func Settle(tb testing.TB) {
	tb.Helper()
	if _, err := Run("sync"); err != nil {
		tb.Fatal(err)
	}
}

// QemuConvert times `qemu-img args...` (a convert whose last argument is
// the output, removed first): plain, as qemu-img runs by default (it never
// syncs its output), and synced, plus an fsync of the output, which is
// what vmmount does and so the like-for-like time.
func QemuConvert(tb testing.TB, args ...string) (plain, synced time.Duration) {
	tb.Helper()
	out := args[len(args)-1]
	os.Remove(out)
	Settle(tb)
	t0 := time.Now()
	if _, err := Run("qemu-img", args...); err != nil {
		tb.Fatal(err)
	}
	plain = time.Since(t0)
	f, err := os.OpenFile(out, os.O_RDWR, 0)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return plain, time.Since(t0)
}
