package testimages

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Volume is one expected volume of a disk fixture: what `vmmount info
// --json` must list. Name is "p<N>" for partition N as Linux numbers it
// (logical MBR partitions from 5), "disk" for a filesystem on a disk
// without a partition table, "<vg>/<lv>" for an LVM logical volume.
type Volume struct {
	Name string `json:"name"`
	// Disk is the index of the disk in DiskImage.Images holding the
	// volume (partitions and whole-disk filesystems).
	Disk int `json:"disk"`
	// Offset is in bytes from the start of that disk; -1 for LVs, which
	// may be spread over several disks.
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
	// FS is ext2/ext3/ext4/ntfs/vfat/swap/LVM2_member/unknown (blkid's
	// TYPE of the content; unknown when blkid finds nothing).
	FS    string `json:"fs"`
	Label string `json:"label,omitempty"`
	UUID  string `json:"uuid,omitempty"`
	// Partition table details (partitions only): the type as sfdisk
	// prints it (MBR "83", GPT type GUID in upper case), the GPT name.
	PartType string `json:"part_type,omitempty"`
	PartName string `json:"part_name,omitempty"`
	// OracleFile is the manifest of the filesystem (ext, ntfs, vfat), and
	// Compare the options to compare it with: "ext", "ntfs" or "fat".
	OracleFile string `json:"oracle,omitempty"`
	Compare    string `json:"compare,omitempty"`
	// MountPoint is the NTFS oracle's ntfs-3g mount point (it appears in
	// absolute link targets).
	MountPoint string `json:"mount_point,omitempty"`
	// LVType and Segments describe an LVM logical volume: its segment type
	// (linear, striped, raid1, mirror) and where its extents live, as lvs
	// reports them (sub-LVs of raid1/mirror legs are in DiskImage.SubLVs).
	LVType   string      `json:"lv_type,omitempty"`
	Segments []LVSegment `json:"segments,omitempty"`
}

// CompareOptions returns the options to compare the volume's content
// with its oracle.
func (v *Volume) CompareOptions() CompareOptions {
	switch v.Compare {
	case "ntfs":
		return NTFSCompare()
	case "fat":
		return FATCompare()
	}
	return ExtCompare()
}

// DiskImage is a built disk fixture: one or more raw disk images (a VM's
// disks) and the volumes a reader must find on them.
type DiskImage struct {
	Name   string   `json:"name"`
	Images []string `json:"images"`
	// Scheme is "gpt", "dos" or "" (no table) for the first disk.
	Scheme string `json:"scheme"`
	// SectorSize is the logical sector size the tables are written in.
	SectorSize int `json:"sector_size"`
	// Hybrid: a GPT disk whose MBR also lists partitions.
	Hybrid bool `json:"hybrid,omitempty"`
	// PrimaryGPTDamaged: LBA 1 is zeroed; the backup GPT is intact.
	PrimaryGPTDamaged bool     `json:"primary_gpt_damaged,omitempty"`
	Volumes           []Volume `json:"volumes"`
	// SubLVs are the hidden LVs (raid1 rmeta/rimage, mirror mimage legs)
	// by name, for the LVM fixture.
	SubLVs map[string][]LVSegment `json:"sub_lvs,omitempty"`
}

// DiskVariants names the disk fixtures BuildDisk makes.
var DiskVariants = []string{"gpt", "gpt-4k", "mbr", "hybrid", "gpt-damaged", "nopart", "nopart-fat", "lvm"}

const diskVersion = "d1"

// DiskTools are the programs BuildDisk needs (besides those of the
// filesystems it holds); LVMTools those of the lvm fixture.
var (
	DiskTools = []string{"sgdisk", "sfdisk", "mkswap", "blkid", "losetup"}
	LVMTools  = []string{"pvcreate", "vgcreate", "lvcreate", "lvs", "pvs", "vgcfgbackup", "vgcfgrestore"}
)

// GetDisk builds (or finds cached) a disk fixture for a test.
func GetDisk(t testing.TB, name string) *DiskImage {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, append(append(append(append([]string{}, DiskTools...), ExtTools...), NTFSTools...), FATTools...)...)
	if name == "lvm" {
		RequireTools(t, LVMTools...)
	}
	d, err := BuildDisk(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// BuildDisk builds the disk fixture name (one of DiskVariants), or
// returns the cached one.
func BuildDisk(name string) (*DiskImage, error) {
	recipe, ok := diskRecipes[name]
	if !ok {
		return nil, fmt.Errorf("no disk fixture %q", name)
	}
	dir, err := Cached("disk-"+name, diskVersion+"-"+extVersion+"-"+ntfsVersion+"-"+fatVersion+"-"+treeVersion, func(dir string) error {
		d := &DiskImage{Name: name}
		if err := recipe(dir, d); err != nil {
			return fmt.Errorf("disk %s: %w", name, err)
		}
		for i, img := range d.Images {
			d.Images[i] = filepath.Base(img)
		}
		return writeInfo(dir, d)
	})
	if err != nil {
		return nil, err
	}
	d := new(DiskImage)
	if err := readInfo(dir, d); err != nil {
		return nil, err
	}
	for i := range d.Images {
		d.Images[i] = filepath.Join(dir, d.Images[i])
	}
	return d, nil
}

// content is what goes into a partition: a filesystem image and what
// blkid says of it.
type content struct {
	file string
	size int64
	vol  Volume // FS, Label, UUID, OracleFile, Compare, MountPoint
}

// component builds or finds the content of a kind: ext4, ntfs, fat16,
// fat32, swap, unknown (pseudo-random bytes), lvm (nothing: the caller
// writes the PV).
func component(dir, kind string) (*content, error) {
	c := &content{}
	switch kind {
	case "ext4":
		x, err := BuildExt(ExtVariants[2])
		if err != nil {
			return nil, err
		}
		c.file, c.vol.OracleFile, c.vol.Compare = x.Image, x.OracleFile, "ext"
	case "ext3":
		x, err := BuildExt(ExtVariants[1])
		if err != nil {
			return nil, err
		}
		c.file, c.vol.OracleFile, c.vol.Compare = x.Image, x.OracleFile, "ext"
	case "ntfs":
		x, err := BuildNTFS(NTFSVariants[0])
		if err != nil {
			return nil, err
		}
		c.file, c.vol.OracleFile, c.vol.Compare, c.vol.MountPoint = x.Image, x.OracleFile, "ntfs", x.MountPoint
	case "fat16", "fat32":
		i := map[string]int{"fat16": 1, "fat32": 2}[kind]
		x, err := BuildFAT(FATVariants[i])
		if err != nil {
			return nil, err
		}
		c.file, c.vol.OracleFile, c.vol.Compare = x.Image, x.OracleFile, "fat"
	case "swap":
		c.file = filepath.Join(dir, "swap.part")
		if err := Truncate(c.file, 16<<20); err != nil {
			return nil, err
		}
		if _, err := Run("mkswap", "-L", "swap0", "-U", fakeUUID("swap"), c.file); err != nil {
			return nil, err
		}
	case "unknown":
		c.file = filepath.Join(dir, "unknown.part")
		var seed [32]byte
		copy(seed[:], "unknown partition content")
		if err := writeRandom(c.file, 4<<20, seed); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("no component %q", kind)
	}
	fi, err := os.Stat(c.file)
	if err != nil {
		return nil, err
	}
	c.size = fi.Size()
	fs, label, uuid, err := Blkid(c.file)
	if err != nil {
		return nil, err
	}
	c.vol.FS, c.vol.Label, c.vol.UUID = fs, label, uuid
	return c, nil
}

// Blkid probes a file with blkid -p: TYPE, LABEL and UUID, "unknown"
// when it recognizes nothing.
func Blkid(file string) (fs, label, uuid string, err error) { return BlkidAt(file, 0, 0) }

// BlkidAt probes [off, off+size) of a file (size 0: to the end).
func BlkidAt(file string, off, size int64) (fs, label, uuid string, err error) {
	args := []string{"-p", "-o", "export", "-O", strconv.FormatInt(off, 10)}
	if size > 0 {
		args = append(args, "-S", strconv.FormatInt(size, 10))
	}
	out, err := Run("blkid", append(args, file)...)
	if err != nil {
		if strings.Contains(err.Error(), "exit status 2") {
			return "unknown", "", "", nil
		}
		return "", "", "", err
	}
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "TYPE":
			fs = v
		case "LABEL":
			label = v
		case "UUID":
			uuid = v
		}
	}
	if fs == "" {
		fs = "unknown"
	}
	return fs, label, uuid, nil
}

func writeRandom(name string, size int64, seed [32]byte) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, io.LimitReader(rand.NewChaCha8(seed), size))
	return errors.Join(err, f.Close())
}

// copyInto copies the data of src (skipping holes, so dst stays sparse)
// into dst at off.
func copyInto(dst string, off int64, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	fi, err := in.Stat()
	if err != nil {
		out.Close()
		return err
	}
	buf := make([]byte, 1<<20)
	fd := int(in.Fd())
	for pos := int64(0); pos < fi.Size(); {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			out.Close()
			return err
		}
		for p := data; p < hole; {
			n, err := in.ReadAt(buf[:min(int64(len(buf)), hole-p)], p)
			if n > 0 {
				if _, werr := out.WriteAt(buf[:n], off+p); werr != nil {
					out.Close()
					return werr
				}
			}
			p += int64(n)
			if err != nil && err != io.EOF {
				out.Close()
				return err
			}
			if n == 0 {
				break
			}
		}
		pos = hole
	}
	return out.Close()
}

// sfdiskPart is one partition of sfdisk -J.
type sfdiskPart struct {
	Node  string `json:"node"`
	Start int64  `json:"start"`
	Size  int64  `json:"size"`
	Type  string `json:"type"`
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
}

// sfdiskLayout reads a disk's table with sfdisk -J: the partitions by
// number, in sectors of the given size.
func sfdiskLayout(img string, sectorSize int) (map[int]sfdiskPart, error) {
	dev, detach, err := sectorDevice(img, sectorSize)
	if err != nil {
		return nil, err
	}
	out, err := Run("sfdisk", "-J", dev)
	detach()
	if err != nil {
		return nil, err
	}
	var d struct {
		PT struct {
			SectorSize int          `json:"sectorsize"`
			Partitions []sfdiskPart `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		return nil, fmt.Errorf("sfdisk -J %s: %w", img, err)
	}
	if d.PT.SectorSize != sectorSize {
		return nil, fmt.Errorf("sfdisk -J %s: sector size %d, want %d", img, d.PT.SectorSize, sectorSize)
	}
	parts := map[int]sfdiskPart{}
	for _, p := range d.PT.Partitions {
		i := len(p.Node)
		for i > 0 && p.Node[i-1] >= '0' && p.Node[i-1] <= '9' {
			i--
		}
		n, err := strconv.Atoi(p.Node[i:])
		if err != nil {
			return nil, fmt.Errorf("sfdisk -J %s: partition node %q", img, p.Node)
		}
		parts[n] = p
	}
	return parts, nil
}
