package fat

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/internal/lru"
)

// Options name the volume in errors.
type Options struct {
	// Name is the volume's name ("p1", "disk0p2"), used in errors.
	Name string
}

// FS is an open FAT volume. It is safe for concurrent use.
type FS struct {
	r    io.ReaderAt
	size int64
	name string // "vfat <Name>" for errors
	geo  geometry

	label    string
	uuid     string
	warnings []string

	fat  *fatTable
	dirs *lru.Cache[uint64, *dirList] // parsed directories by inode

	infoOnce sync.Once
	info     fsys.Info
}

var _ fsys.FileSystem = (*FS)(nil)

// rootIno is the root directory's inode, as in Linux (MSDOS_ROOT_INO).
const rootIno = 1

// kind is the FAT variant, decided by cluster count (spec section 3.5).
type kind int

const (
	fat12 kind = 12
	fat16 kind = 16
	fat32 kind = 32
)

// geometry is where things are in the volume, in bytes.
type geometry struct {
	kind        kind
	sectorSize  int64
	clusterSize int64
	fatOff      int64 // the FAT that is read (the active one on FAT32)
	fatSize     int64
	rootOff     int64 // FAT12/16 fixed root directory
	rootSize    int64
	rootCluster uint32 // FAT32 root directory's first cluster
	dataOff     int64  // cluster 2
	clusters    uint32 // number of data clusters; valid ones are 2..clusters+1
}

// maxCluster is the highest valid cluster number.
func (g *geometry) maxCluster() uint32 { return g.clusters + 1 }

// clusterOff is the byte offset of cluster c (2 <= c <= maxCluster).
func (g *geometry) clusterOff(c uint32) int64 {
	return g.dataOff + int64(c-2)*g.clusterSize
}

// Open reads the boot sector of the FAT volume in r (size bytes). Errors
// are *fsys.CorruptError naming the volume and the offset.
func Open(r io.ReaderAt, size int64, opts Options) (*FS, error) {
	f := &FS{r: r, size: size, name: strings.TrimSpace("vfat " + opts.Name)}
	if err := f.readBootSector(); err != nil {
		return nil, err
	}
	f.fat = newFATTable(f)
	f.dirs = lru.New[uint64, *dirList](maxCachedDirEntries, func(d *dirList) int { return len(d.ents) + 1 })
	f.checkDirty()
	if l, err := f.rootLabel(); err == nil && l != "" {
		f.label = l
	}
	return f, nil
}

func (f *FS) corrupt(ino uint64, off int64, format string, args ...any) error {
	return &fsys.CorruptError{FS: f.name, Ino: ino, Off: off, Msg: fmt.Sprintf(format, args...)}
}

func (f *FS) readBootSector() error {
	var bs [512]byte
	if n, err := f.r.ReadAt(bs[:], 0); n < len(bs) {
		if err == nil || errors.Is(err, io.EOF) {
			return f.corrupt(0, 0, "volume of %d bytes is too small for a boot sector", f.size)
		}
		return fmt.Errorf("%s: reading boot sector: %w", f.name, err)
	}
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return f.corrupt(0, 510, "no boot sector signature 0x55AA")
	}
	p, _ := decodeBPB(bs[:bpbSize])
	switch p.BytsPerSec {
	case 512, 1024, 2048, 4096:
	default:
		return f.corrupt(0, 11, "bytes per sector %d is not 512, 1024, 2048 or 4096", p.BytsPerSec)
	}
	if p.SecPerClus == 0 || p.SecPerClus&(p.SecPerClus-1) != 0 {
		return f.corrupt(0, 13, "sectors per cluster %d is not a power of 2", p.SecPerClus)
	}
	if p.RsvdSecCnt == 0 {
		return f.corrupt(0, 14, "no reserved sectors")
	}
	if p.NumFATs == 0 {
		return f.corrupt(0, 16, "no FATs")
	}
	g := geometry{sectorSize: int64(p.BytsPerSec)}
	g.clusterSize = g.sectorSize * int64(p.SecPerClus)

	// Spec section 3.5: the FAT type is decided by the count of clusters
	// alone, whatever the BPB's type string says.
	fatSz := int64(p.FATSz16)
	var b32 bpb32
	if fatSz == 0 {
		b32, _ = decodeBPB32(bs[bpbSize : bpbSize+bpb32Size])
		fatSz = int64(b32.FATSz32)
	}
	totSec := int64(p.TotSec16)
	if totSec == 0 {
		totSec = int64(p.TotSec32)
	}
	if fatSz == 0 {
		return f.corrupt(0, 22, "FAT size is 0")
	}
	if totSec == 0 {
		return f.corrupt(0, 19, "total sector count is 0")
	}
	rootSecs := (int64(p.RootEntCnt)*dirEntrySize + g.sectorSize - 1) / g.sectorSize
	meta := int64(p.RsvdSecCnt) + int64(p.NumFATs)*fatSz + rootSecs
	if meta >= totSec {
		return f.corrupt(0, 19, "%d sectors of reserved area, FATs and root directory leave no data area in %d sectors", meta, totSec)
	}
	count := (totSec - meta) / int64(p.SecPerClus)
	switch {
	case count < 4085:
		g.kind = fat12
	case count < 65525:
		g.kind = fat16
	default:
		g.kind = fat32
	}
	if count > 0x0FFFFFF5 {
		return f.corrupt(0, 19, "%d clusters is more than FAT32 can address", count)
	}
	g.clusters = uint32(count)
	g.fatSize = fatSz * g.sectorSize
	g.fatOff = int64(p.RsvdSecCnt) * g.sectorSize
	g.dataOff = meta * g.sectorSize

	// The FAT must hold an entry for every cluster (Linux refuses the
	// volume otherwise); clamp rather than refuse, so files in the covered
	// part still read.
	entries := g.fatSize * 8 / int64(g.kind)
	if int64(g.clusters)+2 > entries {
		f.warnings = append(f.warnings, fmt.Sprintf("FAT of %d entries is smaller than the %d clusters; reading only the clusters it maps", entries, g.clusters))
		g.clusters = uint32(entries - 2)
	}

	var volID uint32
	var volLab [11]byte
	var bootSig uint8
	if g.kind == fat32 {
		if p.FATSz16 != 0 {
			b32, _ = decodeBPB32(bs[bpbSize : bpbSize+bpb32Size])
		}
		if p.RootEntCnt != 0 {
			return f.corrupt(0, 17, "FAT32 volume with %d fixed root directory entries", p.RootEntCnt)
		}
		if b32.RootClus < 2 || b32.RootClus > g.maxCluster() {
			return f.corrupt(0, 44, "root directory cluster %d out of range 2..%d", b32.RootClus, g.maxCluster())
		}
		g.rootCluster = b32.RootClus
		// ExtFlags bit 7: mirroring off, bits 0-3 name the active FAT.
		if b32.ExtFlags&0x80 != 0 {
			active := int64(b32.ExtFlags & 0x0F)
			if active >= int64(p.NumFATs) {
				return f.corrupt(0, 40, "active FAT %d of %d", active, p.NumFATs)
			}
			g.fatOff += active * g.fatSize
		}
		volID, volLab, bootSig = b32.VolID, b32.VolLab, b32.BootSig
		if b32.Reserved1&1 != 0 {
			f.warnings = append(f.warnings, "volume was not properly unmounted (dirty bit in boot sector); some data may be inconsistent")
		}
	} else {
		if p.RootEntCnt == 0 {
			return f.corrupt(0, 17, "FAT%d volume with no root directory entries", g.kind)
		}
		g.rootOff = g.fatOff + int64(p.NumFATs)*g.fatSize
		g.rootSize = int64(p.RootEntCnt) * dirEntrySize
		b16, _ := decodeBPB16(bs[bpbSize : bpbSize+bpb16Size])
		volID, volLab, bootSig = b16.VolID, b16.VolLab, b16.BootSig
		if b16.Reserved1&1 != 0 {
			f.warnings = append(f.warnings, "volume was not properly unmounted (dirty bit in boot sector); some data may be inconsistent")
		}
	}
	if g.dataOff > f.size {
		return f.corrupt(0, 14, "data area starts at byte %d, past the end of the %d-byte volume", g.dataOff, f.size)
	}
	if end := g.dataOff + int64(g.clusters)*g.clusterSize; end > f.size {
		f.warnings = append(f.warnings, fmt.Sprintf("volume is truncated: clusters end at byte %d, the volume has %d", end, f.size))
	}
	f.geo = g
	// Extended boot signature 0x29 (or 0x28, ID only) says the serial
	// number and label fields are present.
	if bootSig == 0x29 || bootSig == 0x28 {
		f.uuid = fmt.Sprintf("%04X-%04X", volID>>16, volID&0xFFFF)
	}
	if bootSig == 0x29 {
		if l := shortLabel(volLab[:]); l != "NO NAME" {
			f.label = l
		}
	}
	return nil
}

// checkDirty reads the clean-shutdown bit of FAT entry 1 (spec section
// 4.2): FAT16 bit 15, FAT32 bit 27; clear means the volume was not
// unmounted cleanly.
func (f *FS) checkDirty() {
	v, err := f.fat.entry(1)
	if err != nil {
		return
	}
	var clean uint32
	switch f.geo.kind {
	case fat16:
		clean = 0x8000
	case fat32:
		clean = 0x08000000
	default:
		return
	}
	if v&clean == 0 {
		f.warnings = append(f.warnings, "volume was not properly unmounted (clean bit of FAT entry 1 is off); some data may be inconsistent")
	}
}

// shortLabel decodes an 11-byte label (BPB or volume label entry).
func shortLabel(b []byte) string {
	return strings.TrimRight(cp437String(b), " ")
}

// Root is the root directory's inode.
func (f *FS) Root() uint64 { return rootIno }

// Warnings are conditions that did not stop reading.
func (f *FS) Warnings() []string { return append([]string(nil), f.warnings...) }

// Close drops the caches.
func (f *FS) Close() error {
	f.dirs.Purge()
	f.fat.purge()
	return nil
}

// Info describes the volume. Free space is counted from the FAT the first
// time (FSInfo's count is a hint the spec says not to trust).
func (f *FS) Info() *fsys.Info {
	f.infoOnce.Do(func() {
		g := &f.geo
		f.info = fsys.Info{
			Type:      "vfat",
			Label:     f.label,
			UUID:      f.uuid,
			BlockSize: g.clusterSize,
			Blocks:    uint64(g.clusters),
			Features:  []string{fmt.Sprintf("fat%d", g.kind)},
			NameMax:   255,
		}
		if free, err := f.fat.countFree(); err == nil {
			f.info.FreeBlocks = uint64(free)
		}
	})
	info := f.info
	info.Features = append([]string(nil), info.Features...)
	return &info
}
