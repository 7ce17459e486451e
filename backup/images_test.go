package backup

import (
	"context"
	"encoding/json"
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

// TestImagesVariants: raw points (always full, sparse), compressed points,
// a qcow2 source with a backing chain, and a VM of two disks; each point
// reads as its sources and passes Verify.
func TestImagesVariants(t *testing.T) {
	testimages.RequireTools(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	other := filepath.Join(dir, "other.raw")
	testimages.MustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "20M")
	testimages.MustRun(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x61 0 3M", "-c", "write -P 0x62 10M 1M", base)
	testimages.MustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
	testimages.MustRun(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x63 1M 64k", "-c", "write -z 10M 512k", top)
	testimages.MustRun(t, "qemu-img", "create", "-q", "-f", "raw", other, "5000k") // not a multiple of 64 KiB
	testimages.MustRun(t, "qemu-io", "-f", "raw", "-c", "write -P 0x64 4900k 100k", other)
	src := &Images{Name: "two", Disks: []ImageDisk{{Target: "vda", Path: top}, {Target: "vdb", Path: other, Format: "raw"}}}
	ctx := context.Background()
	// One repository: each case chains on the one before (a qcow2 point
	// on a raw one takes the raw image as its backing file).
	r := newRepo(t)
	clock := testClock()
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"qcow2", Options{}},
		{"zstd", Options{Compress: "zstd"}},
		{"raw", Options{Format: "raw"}},
		{"raw again", Options{Format: "raw"}},
		{"zlib after raw", Options{Compress: "zlib"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Now = clock
			var last *repo.Point
			for range 2 {
				res, err := Run(ctx, r, src, tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				last = res.Point
			}
			m := last.Manifest
			if len(m.Disks) != 2 {
				t.Fatalf("disks %+v", m.Disks)
			}
			raw := tc.opts.Format == "raw"
			if raw == (m.Parent != "") || m.Parent != "" && m.Disks[0].Backing == "" {
				t.Errorf("second point: parent %q for format %q", m.Parent, tc.opts.Format)
			}
			for i, want := range []string{top, other} {
				d := m.Disks[i]
				img := last.Path(d.Image)
				if raw {
					if d.Format != "raw" || d.StoredBytes > d.VirtualSize/2 {
						t.Errorf("raw disk %s: format %s, %d bytes stored (not sparse?)", d.Target, d.Format, d.StoredBytes)
					}
				} else {
					qemuCheck(t, img)
					if d.Compression != tc.opts.Compress {
						t.Errorf("disk %s compression %q", d.Target, d.Compression)
					}
				}
				qemuCompare(t, img, want)
				if raw && d.VirtualSize != imageSize(t, want) {
					t.Errorf("disk %s: %d bytes, source %d", d.Target, d.VirtualSize, imageSize(t, want))
				}
			}
			reps, err := Verify(ctx, r, "two", nil, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, rep := range reps {
				if !rep.OK {
					t.Errorf("%s: %v", rep.Point, rep.Faults)
				}
			}
		})
	}
}

func imageSize(t *testing.T, p string) int64 {
	t.Helper()
	out := testimages.MustRun(t, "qemu-img", "info", "--output=json", p)
	var v struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	return v.VirtualSize
}
