package testimages

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// GPT partition type GUIDs (UEFI spec 5.3.3 and the Discoverable
// Partitions Specification), as sfdisk prints them.
const (
	gptESP       = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	gptLinuxFS   = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	gptLinuxSwap = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
	gptMSData    = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
	gptLinuxRAID = "A19D880F-05FC-4D3B-A006-743F0F84911E"
	gptLinuxLVM  = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
)

// partSpec is one partition to make: its content kind (see component),
// its type (GPT GUID or MBR byte as hex), GPT name, and for MBR whether it
// is a logical partition.
type partSpec struct {
	kind, typ, name string
	logical         bool
}

var diskRecipes = map[string]func(dir string, d *DiskImage) error{
	"gpt": func(dir string, d *DiskImage) error {
		return gptDisk(dir, d, 512, []partSpec{
			{kind: "fat32", typ: gptESP, name: "EFI system partition"},
			{kind: "ext4", typ: gptLinuxFS, name: "root"},
			{kind: "ntfs", typ: gptMSData, name: "Basic data partition"},
			{kind: "swap", typ: gptLinuxSwap, name: "swap"},
			{kind: "unknown", typ: gptLinuxRAID, name: "unknown content"},
		})
	},
	// 4 KiB logical sectors: the table is written by sfdisk
	// --sector-size 4096, LBAs count 4 KiB units.
	"gpt-4k": func(dir string, d *DiskImage) error {
		return gptDisk(dir, d, 4096, []partSpec{
			{kind: "ext4", typ: gptLinuxFS, name: "root"},
			{kind: "swap", typ: gptLinuxSwap, name: "swap"},
			{kind: "fat16", typ: gptMSData, name: "data"},
		})
	},
	// A protective MBR that also lists GPT partitions 1 and 2 (sgdisk -h).
	"hybrid": func(dir string, d *DiskImage) error {
		d.Hybrid = true
		return gptDisk(dir, d, 512, []partSpec{
			{kind: "fat16", typ: gptMSData, name: "shared"},
			{kind: "ext4", typ: gptLinuxFS, name: "linux"},
			{kind: "swap", typ: gptLinuxSwap, name: "swap"},
		})
	},
	// LBA 1 (the primary GPT header) zeroed; the backup at the end of the
	// disk is intact.
	"gpt-damaged": func(dir string, d *DiskImage) error {
		d.PrimaryGPTDamaged = true
		return gptDisk(dir, d, 512, []partSpec{
			{kind: "ext4", typ: gptLinuxFS, name: "root"},
			{kind: "fat16", typ: gptESP, name: "esp"},
		})
	},
	// MBR: three primaries, the extended partition 4 holding three
	// logical ones (5-7). sfdisk makes a partition after the extended one
	// primary while a slot is free, so the extended one takes the last.
	"mbr": func(dir string, d *DiskImage) error {
		return mbrDisk(dir, d, []partSpec{
			{kind: "ext4", typ: "83"},
			{kind: "unknown", typ: "da"},
			{kind: "swap", typ: "82"},
			{kind: "fat16", typ: "e", logical: true},
			{kind: "ntfs", typ: "7", logical: true},
			{kind: "unknown", typ: "bf", logical: true},
		})
	},
	"nopart":     func(dir string, d *DiskImage) error { return wholeDisk(dir, d, "ext4") },
	"nopart-fat": func(dir string, d *DiskImage) error { return wholeDisk(dir, d, "fat16") },
	"lvm":        lvmDisk,
}

func mib(n int64) int64 { return (n + 1<<20 - 1) &^ (1<<20 - 1) }

// gptDisk makes a GPT disk: sgdisk for 512-byte sectors, sfdisk
// --sector-size 4096 for 4 KiB ones, partitions 1 MiB aligned and sized
// to their content; then reads the table back with sfdisk -J and copies
// each content to its partition.
func gptDisk(dir string, d *DiskImage, ss int, specs []partSpec) error {
	d.Scheme, d.SectorSize = "gpt", ss
	comps, total, err := components(dir, specs)
	if err != nil {
		return err
	}
	img := filepath.Join(dir, "disk.img")
	if err := Truncate(img, total+2<<20); err != nil {
		return err
	}
	if ss == 512 {
		args := []string{"-o", "-U", fakeUUID("disk-" + d.Name)}
		for i, s := range specs {
			n := i + 1
			args = append(args, "-n", fmt.Sprintf("%d:0:+%dM", n, mib(comps[i].size)>>20),
				"-t", fmt.Sprintf("%d:%s", n, s.typ), "-c", fmt.Sprintf("%d:%s", n, s.name),
				"-u", fmt.Sprintf("%d:%s", n, fakeUUID(fmt.Sprintf("part-%s-%d", d.Name, n))))
		}
		if _, err := Run("sgdisk", append(args, img)...); err != nil {
			return err
		}
	} else {
		var script strings.Builder
		fmt.Fprintf(&script, "label: gpt\nlabel-id: %s\n", fakeUUID("disk-"+d.Name))
		for i, s := range specs {
			fmt.Fprintf(&script, "size=%dMiB, type=%s, name=%q, uuid=%s\n", mib(comps[i].size)>>20, s.typ, s.name,
				fakeUUID(fmt.Sprintf("part-%s-%d", d.Name, i+1)))
		}
		if err := sfdiskScript(img, ss, script.String()); err != nil {
			return err
		}
	}
	if err := fillPartitions(d, img, ss, specs, comps); err != nil {
		return err
	}
	if d.Hybrid {
		if _, err := Run("sgdisk", "-h", "1:2", img); err != nil {
			return err
		}
	}
	if d.PrimaryGPTDamaged {
		f, err := os.OpenFile(img, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteAt(make([]byte, ss), int64(ss))
		if err := errors.Join(err, f.Close()); err != nil {
			return err
		}
	}
	d.Images = []string{img}
	return nil
}

// mbrDisk makes an MBR disk with sfdisk: primaries first, then an
// extended partition holding the logical ones (each preceded by its EBR,
// 1 MiB aligned).
func mbrDisk(dir string, d *DiskImage, specs []partSpec) error {
	d.Scheme, d.SectorSize = "dos", 512
	comps, total, err := components(dir, specs)
	if err != nil {
		return err
	}
	var script strings.Builder
	script.WriteString("label: dos\nlabel-id: 0x1234abcd\n")
	var ext int64
	for i, s := range specs {
		if s.logical {
			ext += mib(comps[i].size) + 1<<20
		}
	}
	extDone := false
	for i, s := range specs {
		if s.logical && !extDone {
			fmt.Fprintf(&script, "size=%dMiB, type=5\n", ext>>20)
			extDone = true
		}
		boot := ""
		if i == 0 {
			boot = ", bootable"
		}
		fmt.Fprintf(&script, "size=%dMiB, type=%s%s\n", mib(comps[i].size)>>20, s.typ, boot)
	}
	img := filepath.Join(dir, "disk.img")
	if err := Truncate(img, total+ext+2<<20); err != nil {
		return err
	}
	if err := sfdiskScript(img, 512, script.String()); err != nil {
		return err
	}
	if err := fillPartitions(d, img, 512, specs, comps); err != nil {
		return err
	}
	d.Images = []string{img}
	return nil
}

// wholeDisk is a filesystem image used as a disk with no table.
func wholeDisk(dir string, d *DiskImage, kind string) error {
	c, err := component(dir, kind)
	if err != nil {
		return err
	}
	img := filepath.Join(dir, "disk.img")
	if err := Truncate(img, c.size); err != nil {
		return err
	}
	if err := copyInto(img, 0, c.file); err != nil {
		return err
	}
	v := c.vol
	v.Name, v.Offset, v.Size = "disk", 0, c.size
	d.SectorSize, d.Images, d.Volumes = 512, []string{img}, []Volume{v}
	return nil
}

func components(dir string, specs []partSpec) ([]*content, int64, error) {
	var comps []*content
	var total int64
	for _, s := range specs {
		c, err := component(dir, s.kind)
		if err != nil {
			return nil, 0, err
		}
		comps = append(comps, c)
		total += mib(c.size)
	}
	return comps, total, nil
}

// sfdiskScript writes a table with sfdisk from a script. For 4 KiB
// sectors it goes through a loop device with that logical sector size
// (util-linux 2.38's sfdisk has no --sector-size).
func sfdiskScript(img string, ss int, script string) error {
	f, err := os.CreateTemp("", "vmmount-sfdisk-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script); err != nil {
		f.Close()
		return err
	}
	f.Close()
	dev, detach, err := sectorDevice(img, ss)
	if err != nil {
		return err
	}
	defer detach()
	// sfdisk reads the script on standard input.
	_, err = Run("sh", "-c", fmt.Sprintf("sfdisk -q %s < %s", shellQuote(dev), shellQuote(f.Name())))
	return err
}

// sectorDevice returns img itself for 512-byte sectors, else a loop
// device over it with logical sectors of ss bytes.
func sectorDevice(img string, ss int) (string, func(), error) {
	if ss == 512 {
		return img, func() {}, nil
	}
	out, err := Run("losetup", "--find", "--show", "--sector-size", strconv.Itoa(ss), img)
	if err != nil {
		return "", nil, err
	}
	dev := strings.TrimSpace(out)
	return dev, func() { Run("losetup", "-d", dev) }, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// fillPartitions reads the table back (sfdisk -J), copies each content
// into its partition and records the volumes. Partitions are numbered as
// Linux does: primaries from 1 in order (specs list them before any
// logical one, so the extended partition comes after them), logical ones
// from 5.
func fillPartitions(d *DiskImage, img string, ss int, specs []partSpec, comps []*content) error {
	layout, err := sfdiskLayout(img, ss)
	if err != nil {
		return err
	}
	prim, logical := 0, 4
	for i, s := range specs {
		var n int
		if s.logical {
			logical++
			n = logical
		} else {
			prim++
			n = prim
		}
		p, ok := layout[n]
		if !ok {
			return fmt.Errorf("partition %d not in the table sfdisk reads", n)
		}
		off, size := p.Start*int64(ss), p.Size*int64(ss)
		if size < comps[i].size {
			return fmt.Errorf("partition %d: %d bytes for %d of content", n, size, comps[i].size)
		}
		if err := copyInto(img, off, comps[i].file); err != nil {
			return err
		}
		v := comps[i].vol
		v.Name, v.Offset, v.Size, v.PartType, v.PartName = fmt.Sprintf("p%d", n), off, size, p.Type, p.Name
		d.Volumes = append(d.Volumes, v)
	}
	return nil
}
