package testimages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The LVM fixture ("lvm" in DiskVariants): a VM with two disks, a GPT
// partition (disk 0, p1) and a whole disk (disk 1) as physical volumes of
// one volume group vg0 with 4 MiB extents, holding
//
//	vg0/root    linear on disk 0                      ext4 fixture
//	vg0/span    linear, one segment on each disk      FAT16 fixture
//	vg0/stripe  striped over both disks, 64 KiB units NTFS fixture
//	vg0/raid    raid1, one leg per disk (rmeta+rimage) ext3 fixture
//	vg0/mirror  old-style mirror, core log            swap
//
// This machine has no device-mapper, so LVs cannot be activated: pvcreate,
// vgcreate and lvcreate run with activation disabled (lvcreate -an -Zn);
// raid1 and mirror LVs, which lvcreate refuses to make without the kernel
// driver, are added to the metadata text (vgcfgbackup, edit, vgcfgrestore;
// lvs then lists them). Where each LV's extents live is read back with
// lvs --segments and pvs, and the filesystem images are written there
// (stripe by stripe, every leg of a mirror). The raid1 rmeta sub-LVs are
// left zeroed: the array was never started.

// LVSegment is one segment of an LV as lvs --segments reports it.
type LVSegment struct {
	Start      int64    `json:"start"`   // first logical extent
	Extents    int64    `json:"extents"` // length in extents
	Type       string   `json:"type"`    // linear, striped, raid1, mirror
	StripeSize int64    `json:"stripe_size,omitempty"`
	Areas      []LVArea `json:"areas"`
}

// LVArea is where a segment's stripe or leg lives: a disk and byte offset
// (of its first extent), or a sub-LV (raid1 rimage, mirror mimage).
type LVArea struct {
	Disk   int    `json:"disk"`
	Offset int64  `json:"offset"`
	LV     string `json:"lv,omitempty"`
}

const lvmExtentSize = 4 << 20

// lvmConf makes the LVM configuration directory: only the given devices,
// no activation, no udev, no backups, locks in dir.
func lvmConf(dir string, devs ...string) (env []string, err error) {
	var filter []string
	for _, d := range devs {
		filter = append(filter, fmt.Sprintf(`"a|^%s$|"`, d))
	}
	filter = append(filter, `"r|.*|"`)
	conf := fmt.Sprintf(`devices {
	use_devicesfile = 0
	obtain_device_list_from_udev = 0
	scan = [ "/dev" ]
	filter = [ %s ]
}
global {
	use_lvmlockd = 0
	activation = 0
	locking_dir = "%s"
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
backup {
	backup = 0
	archive = 0
}
`, strings.Join(filter, ", "), filepath.Join(dir, "lock"))
	if err := os.MkdirAll(filepath.Join(dir, "lock"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "lvm.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return []string{"LVM_SYSTEM_DIR=" + dir, "LVM_SUPPRESS_FD_WARNINGS=1"}, nil
}

func lvmDisk(dir string, d *DiskImage) error {
	d.Scheme, d.SectorSize = "gpt", 512
	kinds := map[string]string{"root": "ext4", "span": "fat16", "stripe": "ntfs", "raid": "ext3", "mirror": "swap"}
	comps := map[string]*content{}
	for lv, k := range kinds {
		c, err := component(dir, k)
		if err != nil {
			return err
		}
		comps[lv] = c
	}
	ext := func(lv string) int64 { return (comps[lv].size + lvmExtentSize - 1) / lvmExtentSize }
	// Disk 0: GPT, p1 an LVM partition; disk 1: a whole-disk PV.
	disk0, disk1 := filepath.Join(dir, "disk0.img"), filepath.Join(dir, "disk1.img")
	pv0MiB := (ext("root")+10+ext("stripe")/2+ext("raid")+1+ext("mirror")+2)*4 + 1
	if err := Truncate(disk0, (pv0MiB+2)<<20); err != nil {
		return err
	}
	if _, err := Run("sgdisk", "-o", "-U", fakeUUID("disk-lvm-0"), "-n", fmt.Sprintf("1:0:+%dM", pv0MiB),
		"-t", "1:"+gptLinuxLVM, "-c", "1:lvm", "-u", "1:"+fakeUUID("part-lvm-1"), disk0); err != nil {
		return err
	}
	layout, err := sfdiskLayout(disk0, 512)
	if err != nil {
		return err
	}
	p1off, p1size := layout[1].Start*512, layout[1].Size*512
	pv1MiB := (ext("span")-10+ext("stripe")/2+ext("raid")+1+ext("mirror")+2)*4 + 1
	if err := Truncate(disk1, pv1MiB<<20); err != nil {
		return err
	}
	dev0, err := Run("losetup", "--find", "--show", "--offset", fmt.Sprint(p1off), "--sizelimit", fmt.Sprint(p1size), disk0)
	if err != nil {
		return err
	}
	dev0 = strings.TrimSpace(dev0)
	defer Run("losetup", "-d", dev0)
	dev1, err := Run("losetup", "--find", "--show", disk1)
	if err != nil {
		return err
	}
	dev1 = strings.TrimSpace(dev1)
	defer Run("losetup", "-d", dev1)
	env, err := lvmConf(filepath.Join(dir, "lvmconf"), dev0, dev1)
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Join(dir, "lvmconf"))
	lvm := func(args ...string) (string, error) { return RunIn("", env, args[0], args[1:]...) }
	steps := [][]string{
		{"pvcreate", "-y", dev0, dev1},
		{"vgcreate", "-s", "4m", "vg0", dev0, dev1},
		{"lvcreate", "-an", "-Zn", "-y", "-n", "root", "-l", fmt.Sprint(ext("root")), "vg0", dev0},
		{"lvcreate", "-an", "-Zn", "-y", "-n", "span", "-l", fmt.Sprint(ext("span")), "vg0",
			fmt.Sprintf("%s:%d-%d", dev0, ext("root"), ext("root")+9), fmt.Sprintf("%s:0-%d", dev1, ext("span")-11)},
		{"lvcreate", "-an", "-Zn", "-y", "-n", "stripe", "-i", "2", "-I", "64k", "-l", fmt.Sprint(ext("stripe")), "vg0", dev0, dev1},
	}
	for _, s := range steps {
		if _, err := lvm(s...); err != nil {
			return err
		}
	}
	if err := addMirrorLVs(dir, lvm, dev0, dev1, ext("raid"), ext("mirror")); err != nil {
		return err
	}
	segs, err := lvSegments(lvm, map[string]int{dev0: 0, dev1: 1}, map[string]int64{dev0: p1off, dev1: 0})
	if err != nil {
		return err
	}
	// The kernel may cache what LVM wrote through the loop devices: detach
	// them before writing the images' files directly.
	Run("losetup", "-d", dev0)
	Run("losetup", "-d", dev1)
	d.Images = []string{disk0, disk1}
	for _, name := range []string{"root", "span", "stripe", "raid", "mirror"} {
		if err := writeLV(d.Images, segs, name, comps[name].file, comps[name].size); err != nil {
			return fmt.Errorf("writing vg0/%s: %w", name, err)
		}
	}
	// The volumes: the two PVs, then the LVs.
	for i, v := range []Volume{{Name: "p1", Disk: 0, Offset: p1off, Size: p1size, PartType: gptLinuxLVM, PartName: "lvm"},
		{Name: "disk", Disk: 1, Offset: 0, Size: pv1MiB << 20}} {
		fs, label, uuid, err := BlkidAt(d.Images[v.Disk], v.Offset, v.Size)
		if err != nil {
			return err
		}
		if fs != "LVM2_member" {
			return fmt.Errorf("PV %d: blkid says %q", i, fs)
		}
		v.FS, v.Label, v.UUID = fs, label, uuid
		d.Volumes = append(d.Volumes, v)
	}
	for _, name := range []string{"root", "span", "stripe", "raid", "mirror"} {
		v := comps[name].vol
		v.Name, v.Disk, v.Offset = "vg0/"+name, -1, -1
		for _, s := range segs[name] {
			v.Size += s.Extents * lvmExtentSize
			v.LVType = s.Type
		}
		v.Segments = segs[name]
		d.Volumes = append(d.Volumes, v)
	}
	d.SubLVs = map[string][]LVSegment{}
	for name, s := range segs {
		if strings.Contains(name, "_rimage_") || strings.Contains(name, "_rmeta_") || strings.Contains(name, "_mimage_") {
			d.SubLVs[name] = s
		}
	}
	return nil
}

// addMirrorLVs adds vg0/raid (raid1: rmeta and rimage on each PV) and
// vg0/mirror (mirror, core log) to the metadata by editing the text
// vgcfgbackup writes and restoring it, since lvcreate needs the kernel's
// raid and mirror targets to make them. Extents are taken after those in
// use on each PV.
func addMirrorLVs(dir string, lvm func(...string) (string, error), dev0, dev1 string, raidExt, mirrorExt int64) error {
	backup := filepath.Join(dir, "lvmconf", "vg0.txt")
	if _, err := lvm("vgcfgbackup", "-f", backup, "vg0"); err != nil {
		return err
	}
	text, err := os.ReadFile(backup)
	if err != nil {
		return err
	}
	pvName := map[string]string{} // device -> "pv0"
	used := map[string]int64{}    // "pv0" -> first free extent
	out, err := lvm("pvs", "--reportformat", "json", "-o", "pv_name,pv_pe_alloc_count")
	if err != nil {
		return err
	}
	var pvs struct {
		Report []struct {
			PV []struct {
				Name  string `json:"pv_name"`
				Alloc string `json:"pv_pe_alloc_count"`
			} `json:"pv"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &pvs); err != nil || len(pvs.Report) == 0 {
		return fmt.Errorf("pvs: %v: %s", err, out)
	}
	s := string(text)
	for _, p := range pvs.Report[0].PV {
		i := strings.Index(s, fmt.Sprintf("device = %q", p.Name))
		j := strings.LastIndex(s[:max(i, 0)], "\n\t\tpv")
		if i < 0 || j < 0 {
			return fmt.Errorf("vgcfgbackup: no PV for %s", p.Name)
		}
		name := strings.Fields(s[j:])[0]
		pvName[p.Name] = name
		used[name], _ = strconv.ParseInt(p.Alloc, 10, 64)
	}
	alloc := func(dev string, n int64) (string, int64) {
		pv := pvName[dev]
		pe := used[pv]
		used[pv] += n
		return pv, pe
	}
	var add strings.Builder
	lv := func(name string, visible bool, seg string) {
		status := `"READ", "WRITE"`
		if visible {
			status += `, "VISIBLE"`
		}
		fmt.Fprintf(&add, "\n\t\t%s {\n\t\t\tid = %q\n\t\t\tstatus = [%s]\n\t\t\tflags = []\n\t\t\tcreation_time = 1700000000\n\t\t\tcreation_host = \"vmmount-testimages\"\n\t\t\tsegment_count = 1\n\n\t\t\tsegment1 {\n%s\t\t\t}\n\t\t}\n",
			name, lvmID(name), status, seg)
	}
	linear := func(dev string, n int64) string {
		pv, pe := alloc(dev, n)
		return fmt.Sprintf("\t\t\t\tstart_extent = 0\n\t\t\t\textent_count = %d\n\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [\n\t\t\t\t\t%q, %d\n\t\t\t\t]\n", n, pv, pe)
	}
	// lib/raid/raid.c text import: device_count, region_size (sectors),
	// raids = [rmeta, rimage, ...]; lib/mirror: mirror_count, mirrors.
	lv("raid", true, fmt.Sprintf("\t\t\t\tstart_extent = 0\n\t\t\t\textent_count = %d\n\t\t\t\ttype = \"raid1\"\n\t\t\t\tdevice_count = 2\n\t\t\t\tregion_size = 4096\n\t\t\t\traids = [\n\t\t\t\t\t\"raid_rmeta_0\", \"raid_rimage_0\",\n\t\t\t\t\t\"raid_rmeta_1\", \"raid_rimage_1\"\n\t\t\t\t]\n", raidExt))
	for i, dev := range []string{dev0, dev1} {
		lv(fmt.Sprintf("raid_rmeta_%d", i), false, linear(dev, 1))
		lv(fmt.Sprintf("raid_rimage_%d", i), false, linear(dev, raidExt))
	}
	lv("mirror", true, fmt.Sprintf("\t\t\t\tstart_extent = 0\n\t\t\t\textent_count = %d\n\t\t\t\ttype = \"mirror\"\n\t\t\t\tmirror_count = 2\n\t\t\t\tregion_size = 4096\n\t\t\t\tmirrors = [\n\t\t\t\t\t\"mirror_mimage_0\", 0,\n\t\t\t\t\t\"mirror_mimage_1\", 0\n\t\t\t\t]\n", mirrorExt))
	for i, dev := range []string{dev0, dev1} {
		lv(fmt.Sprintf("mirror_mimage_%d", i), false, linear(dev, mirrorExt))
	}
	// Insert before the closing braces of logical_volumes and the VG.
	end := strings.LastIndex(s, "\t}\n")
	if end < 0 {
		return fmt.Errorf("vgcfgbackup text: no end of logical_volumes")
	}
	s = s[:end] + add.String() + s[end:]
	seq := strings.Index(s, "seqno = ")
	if seq < 0 {
		return fmt.Errorf("vgcfgbackup text: no seqno")
	}
	n, _ := strconv.Atoi(strings.Fields(s[seq+8:])[0])
	s = s[:seq] + fmt.Sprintf("seqno = %d", n+1) + s[seq+8+len(strconv.Itoa(n)):]
	if err := os.WriteFile(backup, []byte(s), 0o644); err != nil {
		return err
	}
	_, err = lvm("vgcfgrestore", "-f", backup, "vg0")
	return err
}

// lvmID makes a deterministic LVM UUID (32 characters of [A-Za-z0-9] in
// 6-4-4-4-4-4-6 groups) from a name.
func lvmID(name string) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	u := fakeUUID("lvm-"+name) + fakeUUID("lvm2-"+name)
	var b []byte
	for i := 0; len(b) < 32; i++ {
		if c := u[i]; c != '-' {
			b = append(b, chars[(int(c)*7+i)%len(chars)])
		}
	}
	s := string(b)
	return strings.Join([]string{s[0:6], s[6:10], s[10:14], s[14:18], s[18:22], s[22:26], s[26:32]}, "-")
}

// lvSegments reads every LV's segments (sub-LVs included, by their bare
// names) with lvs and pvs, and turns PV extents into disk offsets.
func lvSegments(lvm func(...string) (string, error), diskOf map[string]int, pvOffset map[string]int64) (map[string][]LVSegment, error) {
	out, err := lvm("pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "pv_name,pe_start")
	if err != nil {
		return nil, err
	}
	var pvs struct {
		Report []struct {
			PV []map[string]string `json:"pv"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &pvs); err != nil || len(pvs.Report) == 0 {
		return nil, fmt.Errorf("pvs: %v", err)
	}
	peStart := map[string]int64{}
	for _, p := range pvs.Report[0].PV {
		peStart[p["pv_name"]], _ = strconv.ParseInt(p["pe_start"], 10, 64)
	}
	out, err = lvm("lvs", "-a", "--segments", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "lv_name,segtype,seg_start_pe,seg_size_pe,stripe_size,seg_pe_ranges,vg_extent_size", "vg0")
	if err != nil {
		return nil, err
	}
	var lvs struct {
		Report []struct {
			Seg []map[string]string `json:"seg"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &lvs); err != nil || len(lvs.Report) == 0 {
		return nil, fmt.Errorf("lvs: %v", err)
	}
	res := map[string][]LVSegment{}
	for _, s := range lvs.Report[0].Seg {
		if es, _ := strconv.ParseInt(s["vg_extent_size"], 10, 64); es != lvmExtentSize {
			return nil, fmt.Errorf("extent size %s", s["vg_extent_size"])
		}
		name := strings.Trim(s["lv_name"], "[]")
		seg := LVSegment{Type: s["segtype"]}
		seg.Start, _ = strconv.ParseInt(s["seg_start_pe"], 10, 64)
		seg.Extents, _ = strconv.ParseInt(s["seg_size_pe"], 10, 64)
		seg.StripeSize, _ = strconv.ParseInt(s["stripe_size"], 10, 64)
		for _, r := range strings.Fields(s["seg_pe_ranges"]) {
			dev, rng, ok := strings.Cut(r, ":")
			first, _, _ := strings.Cut(rng, "-")
			pe, err := strconv.ParseInt(first, 10, 64)
			if !ok || err != nil {
				return nil, fmt.Errorf("lvs: PE range %q", r)
			}
			if disk, ok := diskOf[dev]; ok {
				seg.Areas = append(seg.Areas, LVArea{Disk: disk, Offset: pvOffset[dev] + peStart[dev] + pe*lvmExtentSize})
			} else {
				seg.Areas = append(seg.Areas, LVArea{Disk: -1, LV: dev})
			}
		}
		res[name] = append(res[name], seg)
	}
	return res, nil
}

// writeLV writes size bytes of file as the content of LV name: linear and
// striped segments map LV offsets to disk offsets, raid1 and mirror
// segments write every leg. All-zero chunks are skipped (the disks start
// zeroed and stay sparse).
func writeLV(disks []string, segs map[string][]LVSegment, name, file string, size int64) error {
	in, err := os.Open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	outs := make([]*os.File, len(disks))
	for i, d := range disks {
		if outs[i], err = os.OpenFile(d, os.O_WRONLY, 0); err != nil {
			return err
		}
		defer outs[i].Close()
	}
	var write func(lv string, off int64, p []byte) error
	write = func(lv string, off int64, p []byte) error {
		for len(p) > 0 {
			var seg *LVSegment
			for i := range segs[lv] {
				s := &segs[lv][i]
				if off >= s.Start*lvmExtentSize && off < (s.Start+s.Extents)*lvmExtentSize {
					seg = s
				}
			}
			if seg == nil {
				return fmt.Errorf("LV %s has no segment at byte %d", lv, off)
			}
			rel := off - seg.Start*lvmExtentSize
			n := min(int64(len(p)), (seg.Start+seg.Extents)*lvmExtentSize-off)
			switch seg.Type {
			case "raid1", "mirror":
				for _, a := range seg.Areas {
					if err := write(a.LV, rel, p[:n]); err != nil {
						return err
					}
				}
			case "linear", "striped":
				stripes := int64(len(seg.Areas))
				unit := seg.StripeSize
				if stripes == 1 {
					unit = seg.Extents * lvmExtentSize
				}
				// Stripe k of row r holds LV bytes [(r*stripes+k)*unit, +unit).
				chunk := rel / unit
				a := seg.Areas[chunk%stripes]
				n = min(n, unit-rel%unit)
				if _, err := outs[a.Disk].WriteAt(p[:n], a.Offset+chunk/stripes*unit+rel%unit); err != nil {
					return err
				}
			default:
				return fmt.Errorf("LV %s: segment type %s", lv, seg.Type)
			}
			p, off = p[n:], off+n
		}
		return nil
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < size; off += int64(len(buf)) {
		n, err := in.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && err != io.EOF {
			return err
		}
		if bytes.Equal(buf[:n], zero[:n]) {
			continue
		}
		if err := write(name, off, buf[:n]); err != nil {
			return err
		}
	}
	return nil
}
