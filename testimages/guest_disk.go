package testimages

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// GuestDiskOptions says what goes on a test guest's disk.
type GuestDiskOptions struct {
	// Path of the image to create; default disk.qcow2 (or .raw) in a new
	// t.TempDir().
	Path string
	// Format is "qcow2" (default) or "raw".
	Format string
	// SizeMiB is the virtual size; default 64.
	SizeMiB int
	// Files are added to (or replace) GuestFiles: path under the filesystem
	// root -> content. Parent directories are created.
	Files map[string]string
	// Autorun is the content of /autorun.sh, which the guest runs (with sh,
	// output to the console) after printing GuestReadyMarker. Empty: no
	// script; the guest then writes an increasing number to /counter every
	// second, printing "vmmount-guest: counter N" after each. The guest's
	// view of the disk is under /mnt.
	Autorun string
}

// GuestDisk is a disk image made for the test guest.
type GuestDisk struct {
	Path   string
	Format string
	// Files holds every regular file put on the disk: path (absolute, as in
	// the guest filesystem) -> content.
	Files map[string]string
}

// GuestFiles returns the files every test guest disk starts with, keyed by
// absolute path in the guest filesystem. data/random.bin is 256 KiB of
// fixed pseudo-random bytes, so a copy that lost or moved blocks shows.
func GuestFiles() map[string]string {
	rnd := make([]byte, 256<<10)
	r := rand.New(rand.NewPCG(0x766d6d6f, 0x756e74))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	return map[string]string{
		"/etc/hostname":          "vmmount-guest\n",
		"/etc/fstab":             "/dev/vda / ext4 defaults 0 1\n",
		"/hello.txt":             "hello from the vmmount test guest\n",
		"/home/alice/notes.txt":  strings.Repeat("a line of alice's notes\n", 200),
		"/data/random.bin":       string(rnd),
		"/data/empty":            "",
		"/var/log/guest-ready":   "this file was on the disk before the guest booted\n",
		"/usr/share/doc/README":  "The vmmount test guest disk (testimages.NewGuestDisk).\n",
		"/etc/vmmount-test.conf": "answer = 42\n",
	}
}

// NewGuestDisk makes an ext4 disk for the test guest (mkfs.ext4 -d from a
// staging tree, then qemu-img convert to qcow2) and returns it. It takes a
// fraction of a second.
func NewGuestDisk(t testing.TB, opts GuestDiskOptions) GuestDisk {
	t.Helper()
	RequireTools(t, "mkfs.ext4", "qemu-img")
	d, err := makeGuestDisk(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func makeGuestDisk(tmp string, opts GuestDiskOptions) (GuestDisk, error) {
	format := opts.Format
	if format == "" {
		format = "qcow2"
	}
	if format != "qcow2" && format != "raw" {
		return GuestDisk{}, fmt.Errorf("guest disk format %q: want qcow2 or raw", format)
	}
	size := opts.SizeMiB
	if size == 0 {
		size = 64
	}
	out := opts.Path
	if out == "" {
		out = filepath.Join(tmp, "disk."+format)
	}
	files := GuestFiles()
	for name, content := range opts.Files {
		files[filepath.Clean("/"+name)] = content
	}
	if opts.Autorun != "" {
		files["/autorun.sh"] = opts.Autorun
	}

	tree := filepath.Join(tmp, "guest-tree")
	for name, content := range files {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return GuestDisk{}, err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return GuestDisk{}, err
		}
	}
	defer os.RemoveAll(tree)

	raw := out
	if format == "qcow2" {
		raw = filepath.Join(tmp, "guest-disk.raw")
		defer os.Remove(raw)
	}
	if err := Truncate(raw, int64(size)<<20); err != nil {
		return GuestDisk{}, err
	}
	if _, err := Run("mkfs.ext4", "-q", "-F", "-L", "vmmount-guest", "-E", "root_owner=0:0", "-d", tree, raw); err != nil {
		return GuestDisk{}, err
	}
	if format == "qcow2" {
		if _, err := Run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out); err != nil {
			return GuestDisk{}, err
		}
	}
	return GuestDisk{Path: out, Format: format, Files: files}, nil
}
