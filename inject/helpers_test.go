package inject

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

var testNow = time.Date(2025, 3, 4, 5, 6, 7, 890000000, time.UTC)

func now() time.Time { return testNow }

// prepare copies a raw disk fixture into a temporary directory in the
// given form: raw, qcow2, qcow2-v2-4k (compat 0.10, 4 KiB clusters),
// qcow2-2m (2 MiB clusters), qcow2-compressed, qcow2-snapshot (an internal
// snapshot shares every cluster), qcow2-backing (an empty overlay on a
// qcow2 base). It returns the image to write and, for the overlay, its
// base.
func prepare(t *testing.T, raw, form string) (img, base string) {
	t.Helper()
	dir := t.TempDir()
	img = filepath.Join(dir, "disk."+strings.SplitN(form, "-", 2)[0])
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	switch form {
	case "raw":
		run("cp", "--sparse=always", raw, img)
	case "qcow2":
		run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, img)
	case "qcow2-v2-4k":
		run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "compat=0.10,cluster_size=4096", raw, img)
	case "qcow2-2m":
		run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=2097152", raw, img)
	case "qcow2-compressed":
		run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, img)
	case "qcow2-snapshot":
		run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, img)
		run("qemu-img", "snapshot", "-c", "before", img)
	case "qcow2-backing":
		base = filepath.Join(dir, "base.qcow2")
		run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, base)
		run("qemu-img", "create", "-f", "qcow2", "-b", base, "-F", "qcow2", img)
	default:
		t.Fatalf("form %q", form)
	}
	return img, base
}

// fileSum is the SHA-256 of a whole file.
func fileSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sameFile fails unless two files are byte for byte equal (cmp).
func sameFile(t *testing.T, a, b, what string) {
	t.Helper()
	if out, err := exec.Command("cmp", a, b).CombinedOutput(); err != nil {
		t.Fatalf("%s: cmp %s %s: %v %s", what, a, b, err, out)
	}
}

// asRaw returns the guest view of an image as a raw file.
func asRaw(t *testing.T, img string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "view.raw")
	if b, err := exec.Command("qemu-img", "convert", "-O", "raw", img, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	return out
}

// checkImage runs qemu-img check on a qcow2 image and e2fsck -fn on the
// filesystem at off+size of its guest view, which it returns as a raw
// file.
func checkImage(t *testing.T, img string, off, size int64, what string) string {
	raw, _ := checkImagePart(t, img, off, size, what)
	return raw
}

// checkImagePart is checkImage returning the filesystem's bytes as a file
// too.
func checkImagePart(t *testing.T, img string, off, size int64, what string) (string, string) {
	t.Helper()
	if strings.HasSuffix(img, ".qcow2") {
		if out, err := exec.Command("qemu-img", "check", img).CombinedOutput(); err != nil {
			t.Fatalf("%s: qemu-img check: %v\n%s", what, err, out)
		}
	}
	raw := asRaw(t, img)
	part := filepath.Join(t.TempDir(), "part.img")
	src, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, size)); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	if out, err := exec.Command("e2fsck", "-fn", part).CombinedOutput(); err != nil {
		t.Fatalf("%s: e2fsck -fn: %v\n%s", what, err, out)
	}
	return raw, part
}

// debugfsSees checks that debugfs reads a file of the filesystem image
// part with the source's content and mtime (nanoseconds) and the owner
// and mode given.
func debugfsSees(t *testing.T, part, path, src string, uid, gid uint32, perm uint16) {
	t.Helper()
	got, err := exec.Command("debugfs", "-R", "cat "+path, part).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	if want := readFile(t, src); !bytes.Equal(got, want) {
		t.Errorf("debugfs reads %d bytes of %s, want the %d of %s", len(got), path, len(want), src)
	}
	out, err := exec.Command("debugfs", "-R", "stat "+path, part).Output()
	if err != nil {
		t.Fatalf("debugfs stat %s: %v", path, err)
	}
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	mt := st.ModTime()
	for _, want := range []string{
		fmt.Sprintf("User: %5d   Group: %5d", uid, gid),
		fmt.Sprintf("Mode:  %04o", perm),
		fmt.Sprintf("Size: %d", st.Size()),
		fmt.Sprintf("mtime: 0x%08x:%08x", uint32(mt.Unix()), uint32(mt.Nanosecond())<<2),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("debugfs stat %s lacks %q:\n%s", path, want, out)
		}
	}
}

// sources makes a host tree to inject: files of several sizes, a
// directory with a subdirectory and symlinks.
func sources(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	files := map[string][]byte{
		"fstab":                                []byte("/dev/vda2 / ext4 defaults 0 1\n"),
		"empty":                                nil,
		"big.bin":                              rnd(3<<20 + 777),
		"conf.d/a.conf":                        []byte("a = 1\n"),
		"conf.d/sub/b.conf":                    rnd(70000),
		"conf.d/sub/exactly-4k":                rnd(4096),
		"conf.d/" + strings.Repeat("long", 60): []byte("long name\n"),
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, c, 0o640); err != nil {
			t.Fatal(err)
		}
		mt := time.Date(2020, 1, 2, 3, 4, 5, 600700800, time.UTC)
		if err := os.Chtimes(full, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.conf", filepath.Join(dir, "conf.d", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("far/", 30)+"target", filepath.Join(dir, "conf.d", "sub", "slowlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "conf.d", "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mountView mounts the filesystem at off+size of a raw view read-only.
func mountView(t *testing.T, raw string, off, size int64) string {
	t.Helper()
	mnt, cleanup, err := testimages.LoopMount(raw, off, size, false, "", "ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return mnt
}

// sameTree compares an injected tree under mnt with its source: types,
// content, symlink targets, permission bits, mtimes, owner.
func sameTree(t *testing.T, src, mnt string, uid, gid uint32) {
	t.Helper()
	want, err := testimages.ScanDir(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := testimages.ScanDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want.Entries {
		want.Entries[i].Uid, want.Entries[i].Gid = uid, gid
	}
	o := testimages.CompareOptions{Fields: testimages.FieldType | testimages.FieldPerm | testimages.FieldUid |
		testimages.FieldGid | testimages.FieldSize | testimages.FieldContent | testimages.FieldTarget | testimages.FieldMtime,
		SkipDirTimes: false, IgnorePaths: []string{"."}}
	if diffs := testimages.Compare(want, got, o); len(diffs) > 0 {
		t.Errorf("injected tree differs from its source (-src +guest):\n%s", strings.Join(diffs, "\n"))
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var _ = bytes.Equal
var _ = context.Background
