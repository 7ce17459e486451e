package ext

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/testimages"
)

// Post steps that need the kernel: what mke2fs -d cannot make.

// withMount mounts img read-write, runs fn on the mount point and unmounts.
func withMount(img, opts string, fn func(mnt string) error) error {
	mnt, cleanup, err := testimages.LoopMount(img, 0, 0, true, "", opts)
	if err != nil {
		return err
	}
	defer cleanup()
	return fn(mnt)
}

// kernelWrites makes unwritten extents over blocks that held another
// file's data (so a reader that ignores the unwritten flag returns stale
// bytes), and a file the kernel grows into a deeper extent tree.
func kernelWrites(img string) error {
	return withMount(img, "", func(mnt string) error {
		dir := filepath.Join(mnt, "kernel")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		stale := filepath.Join(dir, "stale")
		if err := os.WriteFile(stale, bytes.Repeat([]byte{0xAB}, 4<<20), 0o644); err != nil {
			return err
		}
		unix.Sync()
		if err := os.Remove(stale); err != nil {
			return err
		}
		unix.Sync()
		f, err := os.Create(filepath.Join(dir, "unwritten"))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := unix.Fallocate(int(f.Fd()), 0, 0, 4<<20); err != nil {
			return err
		}
		if _, err := f.WriteAt(bytes.Repeat([]byte("written;"), 512), 1<<20+100); err != nil {
			return err
		}
		g, err := os.Create(filepath.Join(dir, "keepsize"))
		if err != nil {
			return err
		}
		defer g.Close()
		if _, err := g.Write([]byte("head")); err != nil {
			return err
		}
		if err := unix.Fallocate(int(g.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20); err != nil {
			return err
		}
		// Many small extents: every other 4 KiB block written, so the tree
		// needs index nodes (more than 4 extents).
		h, err := os.Create(filepath.Join(dir, "fragmented"))
		if err != nil {
			return err
		}
		defer h.Close()
		for i := int64(0); i < 2000; i++ {
			if _, err := h.WriteAt([]byte(fmt.Sprintf("block %d", i)), i*8192); err != nil {
				return err
			}
		}
		return nil
	})
}

// casefoldDir makes a casefolded directory through the kernel (chattr +F
// needs an empty directory), large enough to get an htree.
func casefoldDir(img string) error {
	return withMount(img, "", func(mnt string) error {
		dir := filepath.Join(mnt, "cf")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		if _, err := testimages.Run("chattr", "+F", dir); err != nil {
			return err
		}
		for i := range 400 {
			name := fmt.Sprintf("File-%03d-MiXeD-Case-%s.txt", i, []string{"A", "Ä", "ÉTÉ", "straße", "Ω"}[i%5])
			if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
				return err
			}
		}
		return os.Mkdir(filepath.Join(dir, "SubDir"), 0o755)
	})
}

// eaInodes sets xattr values too large for the inode or an xattr block,
// which the kernel puts in ea_inodes.
func eaInodes(img string) error {
	return withMount(img, "", func(mnt string) error {
		dir := filepath.Join(mnt, "ea")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		for i, size := range []int{100, 3000, 20000, 65536} {
			name := filepath.Join(dir, fmt.Sprintf("f%d", i))
			if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
				return err
			}
			v := bytes.Repeat([]byte{byte('a' + i)}, size)
			if err := unix.Setxattr(name, "user.big", v, 0); err != nil {
				return fmt.Errorf("setxattr %d bytes: %w", size, err)
			}
			if err := unix.Setxattr(name, "user.small", []byte("s"), 0); err != nil {
				return err
			}
		}
		return nil
	})
}
