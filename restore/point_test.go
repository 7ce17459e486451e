package restore

import (
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/backup"
	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/testimages"
)

// testPoints is a repository holding two points of VM "web" with one disk
// vda: a full one of the gpt disk fixture and an incremental one (a qcow2
// overlay) after 1 MiB of its unknown-content partition was overwritten.
type testPoints struct {
	repo          *repo.Repo
	disk          *testimages.DiskImage
	full, incr    string // refs
	source, after string // raw images the points were taken of
}

func makePoints(t *testing.T) *testPoints {
	t.Helper()
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "qemu-img", "cp")
	d := testimages.GetDisk(t, "gpt")
	dir := t.TempDir()
	r, err := repo.OpenOrInit(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "vda.img")
	testimages.MustRun(t, "cp", "--sparse=always", d.Images[0], img)
	src := &backup.Images{Name: "web", Disks: []backup.ImageDisk{{Target: "vda", Path: img, Format: "raw"}}}
	ctx := context.Background()
	res1, err := backup.Run(ctx, r, src, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full.img")
	testimages.MustRun(t, "cp", "--sparse=always", img, full)
	var unknown testimages.Volume
	for _, v := range d.Volumes {
		if v.FS == "unknown" {
			unknown = v
		}
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1<<20)
	rand.Read(b)
	if _, err := f.WriteAt(b, unknown.Offset+64<<10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	res2, err := backup.Run(ctx, r, src, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Point.Manifest.Parent != res1.Point.ID {
		t.Fatalf("second point %s is not an incremental on %s", res2.Point.Ref(), res1.Point.ID)
	}
	return &testPoints{repo: r, disk: d, full: res1.Point.Ref(), incr: res2.Point.Ref(), source: full, after: img}
}

// TestPointFiles restores every filesystem of an incremental point (ext4,
// FAT32, NTFS) and compares each with its fixture oracle.
func TestPointFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds disk fixtures")
	}
	tp := makePoints(t)
	ctx := context.Background()
	p, err := OpenPoint(ctx, tp.repo, "web/latest")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Point.Ref() != tp.incr || len(p.Chain) != 2 {
		t.Fatalf("web/latest is %s with a chain of %d, want %s over the full point", p.Point.Ref(), len(p.Chain), tp.incr)
	}
	src, err := PointSource(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	items, warns, err := src.Items([]string{"/"}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("volumes left out: %q", warns)
	dest := fastTempDir(t)
	var log errLog
	sum, err := RestoreFiles(ctx, dest, items, FilesOptions{Owners: true, Xattrs: true, OnError: log.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *sum)
	if len(log.errs) > 0 {
		t.Errorf("errors: %v", log.errs)
	}
	for _, v := range tp.disk.Volumes {
		if v.OracleFile == "" {
			continue
		}
		name := v.Name
		want, err := testimages.ReadJSON(v.OracleFile)
		if err != nil {
			t.Fatal(err)
		}
		got, err := testimages.ScanDir(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		co := volumeCompare(v, want)
		if d := testimages.Compare(want, got, co); len(d) > 0 {
			t.Errorf("%s (%s) differs from its oracle (-want +got):\n%s", name, v.FS, strings.Join(d, "\n"))
		}
	}
}

// TestPointRefused: damaged points are refused before anything is
// written, each with an error that says what is wrong.
func TestPointRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds disk fixtures")
	}
	tp := makePoints(t)
	incr, _ := tp.repo.Point(tp.incr)
	full, _ := tp.repo.Point(tp.full)
	img := incr.Path(incr.Manifest.Disks[0].Image)
	hashes := incr.Path(incr.Manifest.Disks[0].Hashes)
	cases := []struct {
		name   string
		damage func(t *testing.T)
		want   error
	}{
		{"missing image", func(t *testing.T) { os.Remove(img) }, fs.ErrNotExist},
		{"missing parent image", func(t *testing.T) { os.Remove(full.Path(full.Manifest.Disks[0].Image)) }, imagefmt.ErrBackingMissing},
		{"missing parent point", func(t *testing.T) { os.RemoveAll(full.Dir) }, fs.ErrNotExist},
		{"truncated image", func(t *testing.T) { os.Truncate(img, 1<<16) }, repo.ErrCorrupt},
		{"image header", func(t *testing.T) { overwrite(t, img, 0, []byte("garbage!")) }, repo.ErrCorrupt},
		{"checksum list", func(t *testing.T) { overwrite(t, hashes, 200, []byte{0xff}) }, repo.ErrCorrupt},
		{"missing checksum list", func(t *testing.T) { os.Remove(hashes) }, fs.ErrNotExist},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			saved := snapshotRepo(t, tp.repo.Dir)
			defer restoreRepo(t, tp.repo.Dir, saved)
			c.damage(t)
			_, err := OpenPoint(context.Background(), tp.repo, tp.incr)
			if err == nil {
				t.Fatal("damaged point opened")
			}
			if !errors.Is(err, c.want) && !(c.want == repo.ErrCorrupt && isImageFormatErr(err)) {
				t.Errorf("%v, want %v", err, c.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func isImageFormatErr(err error) bool {
	return errors.Is(err, imagefmt.ErrFormat) || errors.Is(err, imagefmt.ErrUnsupported)
}

func overwrite(t *testing.T, name string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// snapshotRepo copies a repository aside (sparse, cheap) so a test can
// damage it and put it back.
func snapshotRepo(t *testing.T, dir string) string {
	t.Helper()
	saved := filepath.Join(t.TempDir(), "saved")
	testimages.MustRun(t, "cp", "-a", "--sparse=always", dir, saved)
	return saved
}

func restoreRepo(t *testing.T, dir, saved string) {
	t.Helper()
	os.RemoveAll(dir)
	testimages.MustRun(t, "cp", "-a", "--sparse=always", saved, dir)
}

// volumeCompare is how a restored volume is compared with a disk
// fixture's oracle (which it may adjust): the volume's options without
// what a host filesystem decides (ctime, directory sizes, blocks, birth
// times) or cannot hold (NTFS attribute flags).
func volumeCompare(v testimages.Volume, want *testimages.Manifest) testimages.CompareOptions {
	co := v.CompareOptions()
	co.Fields &^= testimages.FieldCtime | testimages.FieldDirSize | testimages.FieldBlocks | testimages.FieldBtime
	co.IgnoreXattrs = append(co.IgnoreXattrs, "system.ntfs")
	if v.Compare == "ntfs" {
		ntfsOracleForRestore(want, v.MountPoint)
		co.Fields &^= testimages.FieldNlink // ntfs-3g says 1; the hardlink groups are compared
	}
	return co
}

// ntfsOracleForRestore turns the ntfs-3g oracle into what a restore
// writes: absolute link targets relative to the volume root rather than
// to the oracle's mount point (the restore has no mount), and no size on
// Interix device nodes and sockets (a host inode of that type has none).
func ntfsOracleForRestore(m *testimages.Manifest, mountPoint string) {
	for i := range m.Entries {
		e := &m.Entries[i]
		if mountPoint != "" && strings.HasPrefix(e.Target, mountPoint+"/") {
			e.Target = strings.TrimPrefix(e.Target, mountPoint)
			e.Size = int64(len(e.Target))
		}
		switch e.Type() {
		case "char", "block", "fifo", "socket":
			e.Size = 0
		}
	}
}
