package testimages

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// mountExt mounts an ext image with the variant's reader: a kernel loop
// mount or fuse2fs. A read-only kernel mount of an image that needs
// recovery goes through a writable loop device, so the kernel replays the
// journal (on the caller's copy).
func mountExt(img string, v ExtVariant, writable bool) (string, func() error, error) {
	if v.Oracle == "fuse2fs" {
		mnt, err := os.MkdirTemp("", "vmmount-fuse2fs-")
		if err != nil {
			return "", nil, err
		}
		opt := "ro"
		if writable {
			opt = "rw"
		}
		unmount, err := FuseMount(mnt, "fuse2fs", img, mnt, "-f", "-o", opt)
		if err != nil {
			os.Remove(mnt)
			return "", nil, err
		}
		return mnt, func() error { err := unmount(); os.Remove(mnt); return err }, nil
	}
	opts := ""
	if !writable {
		opts = "ro"
	}
	mnt, cleanup, err := LoopMount(img, 0, 0, writable || v.Journal, "", opts)
	if err != nil {
		return "", nil, err
	}
	return mnt, func() error { cleanup(); return nil }, nil
}

// extReadWrite completes an image through a read-write mount: the rw/
// subtree written by the kernel (or fuse2fs), the variant's extras, the
// source tree's times with nanoseconds, and for the Journal variant the
// crash snapshot.
func extReadWrite(img string, v ExtVariant, src *Manifest, x *ExtImage) error {
	mnt, unmount, err := mountExt(img, v, true)
	if err != nil {
		return err
	}
	defer func() {
		if unmount != nil {
			unmount()
		}
	}()
	rw := filepath.Join(mnt, "rw")
	if err := os.Mkdir(rw, 0o755); err != nil {
		return err
	}
	o := ExtTree()
	o.Seed, o.BigDir, o.Depth, o.LargeSize = 2, 1500, 6, 256<<10
	o.NoPrealloc = v.NoFallocate
	if err := RichTree(rw, o); err != nil {
		return err
	}
	if v.LargeXattr {
		huge := filepath.Join(rw, "xattr", "huge")
		if err := os.WriteFile(huge, []byte("has a 40000-byte xattr\n"), 0o644); err != nil {
			return err
		}
		val := []byte(strings.Repeat("ea_inode value ", 40000/15+1)[:40000])
		if err := unix.Lsetxattr(huge, "user.huge", val, 0); err != nil {
			return fmt.Errorf("setxattr user.huge: %w", err)
		}
	}
	if v.Casefold {
		if err := fillCasefoldDir(filepath.Join(mnt, "cf")); err != nil {
			return err
		}
	}
	if err := Retime(mnt, src); err != nil {
		return err
	}
	snap := ""
	if v.Journal {
		if snap, err = crashSnapshot(img, mnt, x); err != nil {
			return err
		}
	}
	err = unmount()
	unmount = nil
	if err != nil || snap == "" {
		return err
	}
	if err := os.Rename(snap, img); err != nil {
		return err
	}
	if out, err := Run("debugfs", "-R", "ls /journal-only", img); err == nil && strings.Contains(out, "a.txt") {
		return errors.New("crash snapshot: journal-only/ already checkpointed; the image would not test replay")
	}
	return nil
}

// fillCasefoldDir puts names in a casefolded directory that differ from
// each other even after case folding.
func fillCasefoldDir(cf string) error {
	names := []string{"MixedCase.TXT", "Straße.txt", "ÉCOLE.md", "ǅungla", "ΣΊΣΥΦΟΣ", "lower-only"}
	for i := range 300 {
		names = append(names, fmt.Sprintf("File-%03d.Dat", i))
	}
	for i, n := range names {
		if err := os.WriteFile(filepath.Join(cf, n), []byte(fmt.Sprintf("casefold entry %d\n", i)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// crashSnapshot writes journal-only/ and an open unlinked file, commits
// the journal with syncfs, and copies the image while still mounted: the
// copy, whose name it returns, is what a crash at that moment leaves
// (needs_recovery, new metadata in the journal only).
func crashSnapshot(img, mnt string, x *ExtImage) (string, error) {
	// Everything written so far goes in place first, as on a system
	// that has been up for a while; only what follows is journal-only.
	root, err := os.Open(mnt)
	if err != nil {
		return "", err
	}
	err = unix.Syncfs(int(root.Fd()))
	root.Close()
	if err != nil {
		return "", err
	}
	jo := filepath.Join(mnt, "journal-only")
	files := map[string]string{
		"journal-only/a.txt":         "only in the journal\n",
		"journal-only/sub/b.txt":     strings.Repeat("b", 5000),
		"journal-only/sub/deeper/c":  "c\n",
		"journal-only/big.bin":       strings.Repeat("0123456789abcdef", 20000),
		"journal-only/empty":         "",
		"journal-only/sub/deeper/dd": strings.Repeat("d", 60),
	}
	if err := os.MkdirAll(filepath.Join(jo, "sub", "deeper"), 0o755); err != nil {
		return "", err
	}
	for rel, content := range files {
		if err := os.WriteFile(filepath.Join(mnt, rel), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(jo, "link")); err != nil {
		return "", err
	}
	if err := unix.Lsetxattr(filepath.Join(jo, "a.txt"), "user.journal", []byte("xattr in the journal"), 0); err != nil {
		return "", err
	}
	orphan, err := os.Create(filepath.Join(mnt, "orphan-open"))
	if err != nil {
		return "", err
	}
	defer orphan.Close()
	if _, err := orphan.Write(make([]byte, 100<<10)); err != nil {
		return "", err
	}
	if err := os.Remove(orphan.Name()); err != nil {
		return "", err
	}
	// fsync commits the running transaction, which holds all of the
	// above, to the journal without writing the metadata in place (syncfs
	// would: it also flushes the block device's cache).
	if err := orphan.Sync(); err != nil {
		return "", err
	}
	snap := img + ".crash"
	if _, err := Run("cp", "--sparse=always", img, snap); err != nil {
		return "", err
	}
	x.JournalOnly = []string{"journal-only", "journal-only/link", "journal-only/sub", "journal-only/sub/deeper"}
	for rel := range files {
		x.JournalOnly = append(x.JournalOnly, rel)
	}
	slices.Sort(x.JournalOnly)
	return snap, nil
}

// extOracle scans the image through a read-only mount by the variant's
// oracle. A Journal image is copied first, and the copy mounted so the
// kernel replays its journal: the oracle is the recovered view.
func extOracle(img string, v ExtVariant) (*Manifest, error) {
	if v.Journal {
		tmp, err := os.MkdirTemp(Root(), "replay-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		cp := filepath.Join(tmp, "fs.img")
		if _, err := Run("cp", "--sparse=always", img, cp); err != nil {
			return nil, err
		}
		img = cp
	}
	mnt, unmount, err := mountExt(img, v, false)
	if err != nil {
		return nil, err
	}
	m, err := ScanDir(mnt)
	if err := errors.Join(err, unmount()); err != nil {
		return nil, err
	}
	if v.Oracle == "fuse2fs" {
		if err := debugfsTimes(img, m); err != nil {
			return nil, fmt.Errorf("fuse2fs oracle times: %w", err)
		}
	}
	return m, nil
}
