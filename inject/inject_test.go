package inject

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// gptFixture returns the GPT disk fixture and its ext4 volume (p2).
func gptFixture(t *testing.T) (raw string, off, size int64) {
	t.Helper()
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "qemu-img", "e2fsck", "debugfs", "cmp", "losetup", "mount")
	d := testimages.GetDisk(t, "gpt")
	for _, v := range d.Volumes {
		if v.Name == "p2" {
			return filepath.Join(filepath.Dir(d.Images[0]), filepath.Base(d.Images[0])), v.Offset, v.Size
		}
	}
	t.Fatal("gpt fixture has no p2")
	return "", 0, 0
}

// TestInjectAndUndo injects a tree, replaces a file and undoes both, into
// raw and qcow2 images (plain, compressed, with an internal snapshot, an
// overlay on a backing file). After each injection qemu-img check and
// e2fsck find nothing and the kernel shows the files as their sources
// with the right metadata; undoing in the wrong order is refused, undoing
// in order gives the image back byte for byte.
func TestInjectAndUndo(t *testing.T) {
	raw, off, size := gptFixture(t)
	for _, form := range []string{"raw", "qcow2", "qcow2-v2-4k", "qcow2-2m", "qcow2-compressed", "qcow2-snapshot", "qcow2-backing"} {
		t.Run(form, func(t *testing.T) {
			img, base := prepare(t, raw, form)
			orig := img + ".orig"
			if _, err := testimages.Run("cp", "--sparse=always", img, orig); err != nil {
				t.Fatal(err)
			}
			var baseSum string
			if base != "" {
				baseSum = fileSum(t, base)
			}
			src := sources(t)
			ctx := context.Background()
			owner := &Owner{Uid: 1000, Gid: 1001}
			res1, err := Run(ctx, Options{
				Target:   Target{Images: []string{img}},
				Sources:  []string{filepath.Join(src, "fstab"), filepath.Join(src, "empty"), filepath.Join(src, "big.bin"), filepath.Join(src, "conf.d")},
				GuestDir: "/p2/etc/new", Parents: true, Owner: owner,
				UndoFile: filepath.Join(t.TempDir(), "one.undo"), Now: now,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res1.Volume != "/p2" || res1.FS != "ext4" || len(res1.Actions) != 13 {
				t.Errorf("result: volume %s fs %s, %d actions: %+v", res1.Volume, res1.FS, len(res1.Actions), res1.Actions)
			}
			view, part := checkImagePart(t, img, off, size, "after the first injection")
			for _, f := range []string{"fstab", "big.bin", "conf.d/sub/b.conf"} {
				debugfsSees(t, part, "/etc/new/"+f, filepath.Join(src, f), 1000, 1001, 0o640)
			}
			mnt := mountView(t, view, off, size)
			sameTree(t, src, filepath.Join(mnt, "etc", "new"), 1000, 1001)
			if st, err := os.Stat(filepath.Join(mnt, "etc")); err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("--parents directory: %v %v", st, err)
			}

			// Replace a file of the fixture in place, mode given.
			entries, _ := os.ReadDir(filepath.Join(mnt, "files"))
			var victim string
			for _, e := range entries {
				if e.Type().IsRegular() {
					victim = e.Name()
					break
				}
			}
			before, err := os.Lstat(filepath.Join(mnt, "files", victim))
			if err != nil {
				t.Fatal(err)
			}
			repl := filepath.Join(t.TempDir(), victim)
			if err := os.WriteFile(repl, []byte("replaced content\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Run(ctx, Options{Target: Target{Images: []string{img}}, Sources: []string{repl},
				GuestDir: "/p2/files", Now: now}); !errors.Is(err, ErrRefused) {
				t.Fatalf("replacing without --overwrite: %v, want refused", err)
			}
			mode := uint16(0o600)
			res2, err := Run(ctx, Options{Target: Target{Images: []string{img}}, Sources: []string{repl},
				GuestDir: "/p2/files", Overwrite: true, Mode: &mode, UndoFile: filepath.Join(t.TempDir(), "two.undo"), Now: now})
			if err != nil {
				t.Fatal(err)
			}
			view = checkImage(t, img, off, size, "after the replacement")
			mnt = mountView(t, view, off, size)
			p := filepath.Join(mnt, "files", victim)
			if got := string(readFile(t, p)); got != "replaced content\n" {
				t.Errorf("replaced file holds %q", got)
			}
			after, _ := os.Lstat(p)
			if !os.SameFile(before, after) && after.Sys() != nil {
				// Inode numbers of two mounts of different images are
				// comparable: same filesystem layout.
			}
			if after.Mode().Perm() != 0o600 {
				t.Errorf("replaced file mode %v, want 0600", after.Mode())
			}

			// The first injection cannot be undone under the second.
			if _, err := Undo(ctx, res1.UndoFile, UndoOptions{}); !errors.Is(err, ErrChanged) {
				t.Fatalf("undoing the first injection under the second: %v, want ErrChanged", err)
			}
			for _, u := range []string{res2.UndoFile, res1.UndoFile} {
				r, err := Undo(ctx, u, UndoOptions{})
				if err != nil {
					t.Fatalf("undo %s: %v", u, err)
				}
				if r.AlreadyUndone || r.Interrupted {
					t.Errorf("undo %s: %+v", u, r)
				}
			}
			sameFile(t, img, orig, "image after undoing both")
			if base != "" && fileSum(t, base) != baseSum {
				t.Error("the backing file changed")
			}
			if r, err := Undo(ctx, res1.UndoFile, UndoOptions{}); err != nil || !r.AlreadyUndone {
				t.Errorf("second undo: %+v, %v", r, err)
			}
		})
	}
}

// TestDryRun plans without writing a byte and reports the same actions a
// real run does.
func TestDryRun(t *testing.T) {
	raw, _, _ := gptFixture(t)
	img, _ := prepare(t, raw, "qcow2")
	sum := fileSum(t, img)
	src := sources(t)
	o := Options{Target: Target{Images: []string{img}}, Sources: []string{src}, GuestDir: "/p2/opt", Parents: true, DryRun: true, Now: now}
	dry, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if fileSum(t, img) != sum {
		t.Fatal("--dry-run changed the image")
	}
	if dry.UndoFile != "" || len(dry.Writes) == 0 || dry.MetaBytes == 0 || dry.DataBytes == 0 {
		t.Errorf("dry run result: %+v", dry)
	}
	matches, _ := filepath.Glob(img + ".inject-*")
	if len(matches) != 0 {
		t.Errorf("dry run left %v", matches)
	}
	o.DryRun = false
	real, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(real.Actions) != len(dry.Actions) || len(real.Writes) != len(dry.Writes) {
		t.Errorf("dry run said %d actions and %d ranges, the run did %d and %d", len(dry.Actions), len(dry.Writes), len(real.Actions), len(real.Writes))
	}
	if !strings.HasPrefix(real.UndoFile, img+".inject-") {
		t.Errorf("default undo file %s is not next to the image", real.UndoFile)
	}
}

// TestRefusals: everything refused writes nothing, and says why.
func TestRefusals(t *testing.T) {
	raw, _, _ := gptFixture(t)
	img, _ := prepare(t, raw, "raw")
	sum := fileSum(t, img)
	src := sources(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    Options
		want error
		text string
	}{
		{"fat volume", Options{Sources: []string{src + "/fstab"}, GuestDir: "/p1"}, ErrRefused, "holds vfat"},
		{"swap", Options{Sources: []string{src + "/fstab"}, GuestDir: "/p4"}, ErrRefused, "swap"},
		{"missing directory", Options{Sources: []string{src + "/fstab"}, GuestDir: "/p2/no/such"}, fs.ErrNotExist, "--parents"},
		{"no volume", Options{Sources: []string{src + "/fstab"}, GuestDir: "/p9/etc"}, fs.ErrNotExist, "p9"},
		{"namespace root", Options{Sources: []string{src + "/fstab"}, GuestDir: "/"}, fs.ErrNotExist, "not inside a volume"},
		{"file as directory", Options{Sources: []string{src + "/fstab"}, GuestDir: "/p2/" + aFile(t), Parents: true}, ErrRefused, "not a directory"},
		{"fifo source", Options{Sources: []string{fifo}, GuestDir: "/p2"}, ErrRefused, "FIFO"},
		{"exists", Options{Sources: []string{src + "/fstab", src + "/fstab"}, GuestDir: "/p2"}, ErrRefused, "exists"},
		{"directory over a file", Options{Sources: []string{dirNamed(t, filepath.Base(aFile(t)))}, GuestDir: "/p2/files",
			Overwrite: true}, ErrRefused, "is not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.Target, o.Now = Target{Images: []string{img}}, now
			_, err := Run(ctx, o)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("%v, want %v mentioning %q", err, tc.want, tc.text)
			}
		})
	}
	if matches, _ := filepath.Glob(img + ".inject-*"); len(matches) > 0 {
		t.Errorf("refused runs left %v", matches)
	}
	if fileSum(t, img) != sum {
		t.Fatal("refused runs changed the image")
	}

	t.Run("locked", func(t *testing.T) {
		// A QEMU running the VM holds the image's locks.
		lk, err := lockImage(img, true)
		if err != nil {
			t.Fatal(err)
		}
		defer lk.release()
		_, err = Run(ctx, Options{Target: Target{Images: []string{img}}, Sources: []string{src + "/fstab"}, GuestDir: "/p2", Now: now})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "in use") {
			t.Errorf("%v, want refused: in use", err)
		}
	})
	t.Run("loop device", func(t *testing.T) {
		// The host has the image attached (and maybe mounted).
		dev, detach, err := testimages.LoopAttach(img)
		if err != nil {
			t.Fatal(err)
		}
		defer detach()
		_, err = Run(ctx, Options{Target: Target{Images: []string{img}}, Sources: []string{src + "/fstab"}, GuestDir: "/p2", Now: now})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), dev) {
			t.Errorf("%v, want refused naming %s", err, dev)
		}
	})
	t.Run("qcow2 bitmaps", func(t *testing.T) {
		q, _ := prepare(t, raw, "qcow2")
		if out, err := testimages.Run("qemu-img", "bitmap", "--add", q, "checkpoint"); err != nil {
			t.Fatal(err, out)
		}
		before := fileSum(t, q)
		_, err := Run(ctx, Options{Target: Target{Images: []string{q}}, Sources: []string{src + "/fstab"}, GuestDir: "/p2", Now: now})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "bitmaps") {
			t.Errorf("%v, want refused: bitmaps", err)
		}
		if fileSum(t, q) != before {
			t.Error("a refused run changed the image")
		}
	})
	t.Run("lvm", func(t *testing.T) {
		d := testimages.GetDisk(t, "lvm")
		var imgs []string
		for _, p := range d.Images {
			c, _ := prepare(t, p, "raw")
			imgs = append(imgs, c)
		}
		var lv string
		for _, v := range d.Volumes {
			if v.Offset < 0 && v.FS == "ext4" {
				lv = "/" + strings.ReplaceAll(v.Name, "/", "-")
				break
			}
		}
		if lv == "" {
			t.Skip("no ext4 LV in the fixture")
		}
		_, err := Run(ctx, Options{Target: Target{Images: imgs}, Sources: []string{src + "/fstab"}, GuestDir: lv, Now: now})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "LVM") {
			t.Errorf("%v, want refused: LVM", err)
		}
	})
	for _, fx := range []struct{ variant, dir, text string }{
		{"ext4-journal", "/fs", "journal needs recovery"},
		{"ext4-bigalloc", "/fs", "bigalloc"},
		{"ext4-casefold", "/fs/cf", "casefolded"},
	} {
		t.Run(fx.variant, func(t *testing.T) {
			var v testimages.ExtVariant
			for _, x := range testimages.ExtVariants {
				if x.Name == fx.variant {
					v = x
				}
			}
			x := testimages.GetExt(t, v)
			c, _ := prepare(t, x.Image, "raw")
			before := fileSum(t, c)
			_, err := Run(ctx, Options{Target: Target{Images: []string{c}}, Sources: []string{src + "/fstab"}, GuestDir: fx.dir, Now: now})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), fx.text) {
				t.Errorf("%v, want refused: %s", err, fx.text)
			}
			if fileSum(t, c) != before {
				t.Error("a refused run changed the image")
			}
		})
	}
}

// aFile is a regular file of the ext4 fixture the GPT disk holds.
func aFile(t *testing.T) string {
	t.Helper()
	d := testimages.GetDisk(t, "gpt")
	for _, v := range d.Volumes {
		if v.Name != "p2" {
			continue
		}
		m, err := testimages.ReadJSON(v.OracleFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range m.Entries {
			if e.Type() == "file" && strings.HasPrefix(e.Path, "files/") {
				return e.Path
			}
		}
	}
	t.Fatal("no file in the fixture")
	return ""
}

// dirNamed makes an empty directory with the given name.
func dirNamed(t *testing.T, name string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), name)
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}
