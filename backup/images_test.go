package backup

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/testimages"
)

// TestImagesChain backs up a raw ext4 disk three times, changing files in
// between: a full point, then two incrementals by hash comparison. Every
// point's image passes qemu-img check and reads exactly as the source did
// at its time, and the guest files are there.
func TestImagesChain(t *testing.T) {
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "qemu-img", "mkfs.ext4", "e2fsck", "losetup", "mount")
	disk := testimages.NewGuestDisk(t, testimages.GuestDiskOptions{Format: "raw", SizeMiB: 64})
	r := newRepo(t)
	ctx := context.Background()
	src := &Images{Name: "web", Disks: []ImageDisk{{Target: "vda", Path: disk.Path}}}
	opts := Options{Tool: "vmmount test", Now: testClock()}
	states := t.TempDir()

	changes := []map[string]string{
		nil,
		{"/hello.txt": "", "/new/file.txt": "second point\n"},
		{"/new/file.txt": "third point, changed\n", "/big.bin": strings.Repeat("x", 3<<20)},
	}
	var points []*repo.Point
	for i, ch := range changes {
		if ch != nil {
			writeGuestFiles(t, disk.Path, ch)
		}
		copySparse(t, disk.Path, filepath.Join(states, pointState(i)))
		res, err := Run(ctx, r, src, opts)
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		points = append(points, res.Point)
		m := res.Point.Manifest
		d := m.Disks[0]
		if i == 0 && (m.Parent != "" || d.Backing != "" || m.ChainLength != 1) {
			t.Errorf("first point: parent %q backing %q chain %d", m.Parent, d.Backing, m.ChainLength)
		}
		if i > 0 {
			if m.Parent != points[i-1].ID || d.Backing != "../"+points[i-1].ID+"/vda.qcow2" || m.ChainLength != i+1 {
				t.Errorf("point %d: parent %q backing %q chain %d", i, m.Parent, d.Backing, m.ChainLength)
			}
			if d.ChangedBytes <= 0 || d.ChangedBytes > 8<<20 {
				t.Errorf("point %d stored %d changed bytes", i, d.ChangedBytes)
			}
		}
		if m.Mode != repo.ModeImages || m.Consistency != repo.ConsistencyOffline || d.VirtualSize != 64<<20 {
			t.Errorf("point %d: manifest %+v", i, m)
		}
	}
	for i, p := range points {
		img := p.Path("vda.qcow2")
		qemuCheck(t, img)
		qemuCompare(t, img, filepath.Join(states, pointState(i)))
	}
	got := readGuestFiles(t, points[2].Path("vda.qcow2"), "hello.txt", "new/file.txt", "etc/hostname")
	if got["new/file.txt"] != "third point, changed\n" || !strings.HasPrefix(got["hello.txt"], "<") || got["etc/hostname"] != "vmmount-guest\n" {
		t.Errorf("files of the third point: %q", got)
	}
	// An unchanged disk gives an incremental that stores nothing.
	res, err := Run(ctx, r, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Point.Manifest.Disks[0]; d.ChangedBytes != 0 {
		t.Errorf("unchanged disk: %d bytes stored", d.ChangedBytes)
	}
	qemuCompare(t, res.Point.Path("vda.qcow2"), disk.Path)
}

func pointState(i int) string { return "state" + string(rune('0'+i)) + ".raw" }
