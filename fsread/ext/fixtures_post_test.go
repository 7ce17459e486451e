package ext

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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

// casefoldDir makes a casefolded directory (EXT4_CASEFOLD_FL|EXTENTS_FL) with debugfs (this kernel has
// no CONFIG_UNICODE, so it cannot), then lets e2fsck -D index it with
// casefolded hashes, and checks that e2fsck finds it consistent.
func casefoldDir(img string) error {
	one, err := os.CreateTemp("", "casefold-src-")
	if err != nil {
		return err
	}
	defer os.Remove(one.Name())
	one.WriteString("casefold content\n")
	one.Close()
	var cmds bytes.Buffer
	fmt.Fprintf(&cmds, "mkdir cf\nset_inode_field cf flags 0x40080000\ncd cf\n")
	for _, name := range casefoldNames() {
		fmt.Fprintf(&cmds, "write %s %s\n", one.Name(), name)
	}
	fmt.Fprintf(&cmds, "mkdir SubDir\n")
	script := img + ".debugfs"
	if err := os.WriteFile(script, cmds.Bytes(), 0o644); err != nil {
		return err
	}
	defer os.Remove(script)
	if _, err := testimages.Run("debugfs", "-w", "-f", script, img); err != nil {
		return err
	}
	if _, err := testimages.Run("e2fsck", "-fyD", img); err != nil && !strings.Contains(err.Error(), "exit status 1") {
		return err
	}
	_, err = testimages.Run("e2fsck", "-fn", img)
	return err
}

func casefoldNames() []string {
	var out []string
	for i := range 400 {
		out = append(out, fmt.Sprintf("File-%03d-MiXeD-Case-%s.txt", i, []string{"A", "Ä", "ÉTÉ", "straße", "Ω"}[i%5]))
	}
	return out
}

// crashCopy mounts img read-write with a commit every second, runs
// session, waits for its transactions to commit and copies the image while
// it is still mounted: the copy is what a crash-consistent backup of a
// running VM holds, a journal that needs recovery with metadata not yet
// written in place (writeback waits 30 s). The copy becomes the image.
func crashCopy(img string, session func(mnt string) error) error {
	crash := img + ".crash"
	err := withMount(img, "commit=1", func(mnt string) error {
		if err := session(mnt); err != nil {
			return err
		}
		time.Sleep(2500 * time.Millisecond)
		_, err := testimages.Run("cp", "--sparse=always", img, crash)
		return err
	})
	if err != nil {
		os.Remove(crash)
		return err
	}
	out, err := testimages.Run("dumpe2fs", "-h", crash)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "needs_recovery") {
		return fmt.Errorf("crash copy of %s does not need recovery", img)
	}
	return os.Rename(crash, img)
}

// crashSession churns the filesystem: a directory of files committed then
// deleted (so the journal holds revoke records and freed blocks get
// reused), then journal-only/ with files, a symlink, xattrs and a hardlink.
func crashSession(mnt string) error {
	churn := filepath.Join(mnt, "churn")
	if err := os.Mkdir(churn, 0o755); err != nil {
		return err
	}
	for i := range 300 {
		if err := os.WriteFile(filepath.Join(churn, fmt.Sprintf("churn-file-%04d", i)), []byte(strings.Repeat("c", i*10)), 0o644); err != nil {
			return err
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if err := os.RemoveAll(churn); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mnt, "reuse.bin"), bytes.Repeat([]byte("reused blocks;"), 200000), 0o644); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond)
	jo := filepath.Join(mnt, "journal-only")
	if err := os.Mkdir(jo, 0o750); err != nil {
		return err
	}
	for i := range 50 {
		name := filepath.Join(jo, fmt.Sprintf("only-in-journal-%02d", i))
		if err := os.WriteFile(name, bytes.Repeat([]byte{byte(i)}, i*1000), 0o640); err != nil {
			return err
		}
	}
	if err := os.Symlink("only-in-journal-01", filepath.Join(jo, "link")); err != nil {
		return err
	}
	if err := os.Link(filepath.Join(jo, "only-in-journal-02"), filepath.Join(jo, "hardlink")); err != nil {
		return err
	}
	if err := unix.Setxattr(filepath.Join(jo, "only-in-journal-03"), "user.journal", []byte("replayed"), 0); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(jo, "only-in-journal-04"), 1234, 5678); err != nil {
		return err
	}
	return os.Truncate(filepath.Join(mnt, "reuse.bin"), 100000)
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
