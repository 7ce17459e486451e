package fsread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vmmount/vmmount/fsread/ntfs"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/testimages"
)

// openImages opens raw disk images as one VM's disks.
func openImages(t testing.TB, files ...string) *Set {
	t.Helper()
	var srcs []DiskSource
	for _, f := range files {
		img, err := imagefmt.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { img.Close() })
		srcs = append(srcs, DiskSource{Name: DiskName(f), Image: img})
	}
	s, err := OpenSet(context.Background(), srcs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// expected turns a fixture's expected volume (blkid, sfdisk and lvs say
// what is there) into what a Volume must show.
type expected struct {
	Path, FS, Label, UUID string
	Offset, Size          int64
	PartType, PartName    string
}

func fixtureVolume(d *testimages.DiskImage, v testimages.Volume) expected {
	fsType := map[string]string{"LVM2_member": TypeLVM2PV, "crypto_LUKS": TypeLUKS, "linux_raid_member": TypeMDRaid}[v.FS]
	if fsType == "" {
		fsType = v.FS
	}
	e := expected{FS: fsType, Label: v.Label, UUID: v.UUID, Offset: v.Offset, Size: v.Size, PartName: v.PartName}
	name := v.Name
	switch {
	case strings.Contains(name, "/"): // vg/lv
		vg, lv, _ := strings.Cut(name, "/")
		e.Path = "/" + strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
		e.Offset = 0
	case name == "disk":
		name = "fs"
		fallthrough
	default:
		e.Path = "/" + name
		if len(d.Images) > 1 {
			e.Path = "/" + DiskName(d.Images[v.Disk]) + e.Path
		}
	}
	switch {
	case v.PartType == "":
	case len(v.PartType) <= 2: // MBR, as sfdisk prints it
		n, _ := strconv.ParseUint(v.PartType, 16, 8)
		e.PartType = fmt.Sprintf("0x%02x", n)
	default:
		e.PartType = strings.ToLower(v.PartType)
	}
	return e
}

func ours(v *Volume) expected {
	e := expected{Path: v.Path, FS: v.FSType, Label: v.Label, UUID: v.UUID, Offset: v.Offset, Size: v.Size}
	if v.Partition != nil {
		e.PartType, e.PartName = v.Partition.Type, v.Partition.Name
	}
	return e
}

// TestDiskFixtures opens every partitioned, unpartitioned and LVM disk
// fixture: the volume list must be what sfdisk, blkid and lvs say, and
// every filesystem must match its oracle (kernel mount, ntfs-3g, source
// tree) entry for entry.
func TestDiskFixtures(t *testing.T) {
	for _, name := range testimages.DiskVariants {
		t.Run(name, func(t *testing.T) {
			d := testimages.GetDisk(t, name)
			s := openImages(t, d.Images...)
			if errs := s.Errors(); len(errs) != 0 {
				t.Errorf("set errors: %v", errs)
			}
			var want, got []expected
			for _, v := range d.Volumes {
				want = append(want, fixtureVolume(d, v))
			}
			for _, v := range s.Volumes() {
				got = append(got, ours(v))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("volumes (-fixture +ours):\n%s", diff)
			}
			disk := s.Disks()[0]
			if disk.Table != d.Scheme || disk.Hybrid != d.Hybrid || (d.Scheme != "" && disk.SectorSize != d.SectorSize) {
				t.Errorf("disk 0: table %q sector size %d hybrid %v; fixture %q %d %v", disk.Table, disk.SectorSize, disk.Hybrid, d.Scheme, d.SectorSize, d.Hybrid)
			}
			if d.PrimaryGPTDamaged && !strings.Contains(strings.Join(disk.Warnings, "\n"), "using the backup") {
				t.Errorf("damaged primary GPT read without a warning: %q", disk.Warnings)
			}
			for i, fv := range d.Volumes {
				if fv.OracleFile == "" {
					continue
				}
				vol := s.Volumes()[i]
				t.Run(strings.TrimPrefix(vol.Path, "/"), func(t *testing.T) {
					checkContent(t, vol, fv)
				})
			}
		})
	}
}

func checkContent(t *testing.T, vol *Volume, fv testimages.Volume) {
	oracle, err := testimages.ReadJSON(fv.OracleFile)
	if err != nil {
		t.Fatal(err)
	}
	f, err := vol.FS()
	if err != nil {
		t.Fatalf("FS: %v", err)
	}
	if fv.MountPoint != "" {
		// ntfs-3g's absolute link targets carry the oracle's mount
		// point: open the same volume window with it.
		f, err = ntfs.Open(vol.ReaderAt(), vol.Size, ntfs.Options{Name: vol.Name, MountPoint: fv.MountPoint})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
	}
	m, err := testimages.ScanFS(f)
	if err != nil {
		t.Fatal(err)
	}
	if fv.Compare == "ntfs" {
		// The shared NTFS oracle (testimages/ntfs.go) does not read
		// system.ntfs_reparse_data from the ntfs-3g mount (listxattr does
		// not list it); fsread/ntfs checks it against its own oracle.
		for i := range m.Entries {
			delete(m.Entries[i].Xattrs, testimages.XattrNTFSReparse)
		}
	}
	if diffs := testimages.Compare(oracle, m, fv.CompareOptions()); len(diffs) != 0 {
		t.Errorf("%d differences from the oracle:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
}

func TestResolve(t *testing.T) {
	d := testimages.GetDisk(t, "lvm")
	s := openImages(t, d.Images...)
	for _, c := range []struct {
		path, vol, rest string
		dir             bool
		notFound        bool
	}{
		{path: "/", dir: true},
		{path: "", dir: true},
		{path: "/disk0", dir: true},
		{path: "/disk1/", dir: true},
		{path: "/disk0/p1", vol: "/disk0/p1", rest: "."},
		{path: "/vg0-root/etc/../etc/fstab", vol: "/vg0-root", rest: "etc/fstab"},
		{path: "vg0-span//a/b/", vol: "/vg0-span", rest: "a/b"},
		{path: "/disk1/fs", vol: "/disk1/fs", rest: "."},
		{path: "/disk0/p9", notFound: true},
		{path: "/nope/x", notFound: true},
		{path: "/disk0/../vg0-raid", vol: "/vg0-raid", rest: "."},
	} {
		v, rest, err := s.Resolve(c.path)
		switch {
		case c.notFound:
			var nf *NotFoundError
			if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &nf) {
				t.Errorf("Resolve(%q) = %v, %q, %v; want not found", c.path, v, rest, err)
			}
			t.Logf("%v", err)
		case err != nil:
			t.Errorf("Resolve(%q): %v", c.path, err)
		case c.dir:
			if v != nil || rest != "" || s.Dir(c.path) == nil {
				t.Errorf("Resolve(%q) = %v, %q; want a namespace directory", c.path, v, rest)
			}
		default:
			if v == nil || v.Path != c.vol || rest != c.rest {
				t.Errorf("Resolve(%q) = %v, %q; want %s, %q", c.path, v, rest, c.vol, c.rest)
			}
		}
	}
	var top []string
	for _, dd := range s.Root().Dirs {
		top = append(top, dd.Name)
	}
	for _, v := range s.Root().Volumes {
		top = append(top, v.Name)
	}
	if diff := cmp.Diff([]string{"disk0", "disk1", "vg0-root", "vg0-span", "vg0-stripe", "vg0-raid", "vg0-mirror"}, top); diff != "" {
		t.Errorf("root (-want +got):\n%s", diff)
	}
	// The PVs say what they are and where their LVs went.
	pv, _, _ := s.Resolve("/disk0/p1")
	if _, err := pv.FS(); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "/vg0-root") {
		t.Errorf("PV volume FS: %v", err)
	}
	if swap, _, _ := s.Resolve("/vg0-mirror"); swap.Readable() || !errors.Is(swap.Err(), ErrUnsupported) {
		t.Errorf("swap LV: readable %v, %v", swap.Readable(), swap.Err())
	}
	lv, _, _ := s.Resolve("/vg0-stripe")
	if lv.LV == nil || lv.LV.Type != "striped" || strings.Join(lv.LV.PVs, " ") != "/disk0/p1 /disk1/fs" {
		t.Errorf("LV info %+v", lv.LV)
	}
}

// TestMissingDisk opens one disk of the two of the LVM fixture: LVs that
// live on it alone still read, the others say which PV is missing.
func TestMissingDisk(t *testing.T) {
	d := testimages.GetDisk(t, "lvm")
	s := openImages(t, d.Images[0])
	readable := map[string]bool{}
	for _, v := range s.Volumes() {
		readable[v.Path] = v.Readable()
		if v.Kind == KindLV && !v.Readable() {
			t.Logf("%s: %v", v.Path, v.Err())
		}
	}
	want := map[string]bool{"/p1": false, "/vg0-root": true, "/vg0-span": false, "/vg0-stripe": false, "/vg0-raid": true, "/vg0-mirror": false}
	if diff := cmp.Diff(want, readable); diff != "" {
		t.Errorf("readable (-want +got):\n%s", diff)
	}
	if len(s.Warnings()) == 0 {
		t.Errorf("no warning about the missing PV")
	}
	v, _, _ := s.Resolve("/vg0-raid")
	f, err := v.FS()
	if err != nil {
		t.Fatalf("raid1 LV from its remaining leg: %v", err)
	}
	if _, err := NewFS(f).Stat("."); err != nil {
		t.Errorf("stat root: %v", err)
	}
}

// TestFSOnce opens one volume from many goroutines: one filesystem, the
// same for all (run with -race).
func TestFSOnce(t *testing.T) {
	d := testimages.GetDisk(t, "nopart")
	s := openImages(t, d.Images...)
	v := s.Volumes()[0]
	got := make(chan FileSystem, 8)
	for range 8 {
		go func() {
			f, err := v.FS()
			if err != nil {
				t.Error(err)
			}
			got <- f
		}()
	}
	first := <-got
	for range 7 {
		if f := <-got; f != first {
			t.Errorf("FS returned different filesystems")
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if f, err := v.FS(); f != nil || err == nil {
		t.Errorf("FS after Close = %v, %v; want an error", f, err)
	}
}

func TestVolumeJSON(t *testing.T) {
	d := testimages.GetDisk(t, "gpt")
	s := openImages(t, d.Images...)
	b, err := json.Marshal(s.Volumes())
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "path", "offset", "size", "fs", "label", "uuid", "readable", "partition"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
	if got[3]["fs"] != "swap" || got[3]["readable"] != false || !strings.Contains(fmt.Sprint(got[3]["error"]), "swap") {
		t.Errorf("swap volume JSON: %v", got[3])
	}
}
