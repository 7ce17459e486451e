package ntfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"strings"
	"sync"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/internal/lru"
)

// Options name the volume and say where it is mounted.
type Options struct {
	// Name is the volume's name ("p2"), used in errors.
	Name string
	// MountPoint is the absolute path the volume is mounted at, which
	// ntfs-3g puts in front of absolute symlink and junction targets.
	// Empty means targets start with "/" at the volume's root.
	MountPoint string
}

// FS is an open NTFS volume, safe for concurrent use.
type FS struct {
	r          io.ReaderAt
	size       int64
	name       string
	mountPoint string

	sectorSize  int64
	clusterSize int64
	clusters    int64
	recSize     int64
	serial      uint64

	mft      *stream
	label    string
	warnings []string

	inodes *lru.Cache[uint64, *inode]
	dirs   *lru.Cache[uint64, *dirList]

	infoOnce sync.Once
	info     fsys.Info
}

var _ fsys.FileSystem = (*FS)(nil)

// Cache bounds.
const (
	maxCachedInodes     = 8192
	maxCachedDirEntries = 1 << 17
)

func (f *FS) corrupt(ino uint64, off int64, format string, args ...any) error {
	return &fsys.CorruptError{FS: f.name, Ino: ino, Off: off, Msg: fmt.Sprintf(format, args...)}
}

func (f *FS) notExist(ino uint64, msg string) error {
	return fmt.Errorf("%s: inode %d: %s: %w", f.name, ino, msg, fs.ErrNotExist)
}

// Open reads the NTFS volume in r (size bytes): boot sector, $MFT, $Volume
// and $LogFile. Errors are *fsys.CorruptError naming the volume and offset.
func Open(r io.ReaderAt, size int64, opts Options) (*FS, error) {
	f := &FS{r: r, size: size, name: strings.TrimSpace("ntfs " + opts.Name), mountPoint: strings.TrimRight(opts.MountPoint, "/")}
	if err := f.readBoot(); err != nil {
		return nil, err
	}
	f.inodes = lru.New[uint64, *inode](maxCachedInodes, func(*inode) int { return 1 })
	f.dirs = lru.New[uint64, *dirList](maxCachedDirEntries, func(d *dirList) int { return len(d.ents) + 1 })
	if err := f.loadMFT(); err != nil {
		return nil, err
	}
	if _, err := f.inode(mftRecordRoot); err != nil {
		return nil, fmt.Errorf("root directory: %w", err)
	}
	f.readVolumeInfo()
	f.checkLogFile()
	return f, nil
}

func (f *FS) readBoot() error {
	var b [512]byte
	if n, err := f.r.ReadAt(b[:], 0); n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			return f.corrupt(0, 0, "volume of %d bytes is too small for a boot sector", f.size)
		}
		return fmt.Errorf("%s: reading boot sector: %w", f.name, err)
	}
	var bs bootSector
	decode(b[:], &bs)
	if string(bs.OEMID[:]) != "NTFS    " {
		return f.corrupt(0, 3, "boot sector OEM ID is %q, not NTFS", bs.OEMID[:])
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return f.corrupt(0, 510, "no boot sector signature 0x55AA")
	}
	bps := int64(bs.BytesPerSector)
	if bps < 256 || bps > 4096 || bits.OnesCount64(uint64(bps)) != 1 {
		return f.corrupt(0, 11, "bytes per sector %d", bps)
	}
	spc := int64(bs.SectorsPerCluster)
	if spc > 0x80 {
		if 256-spc > 12 {
			return f.corrupt(0, 13, "sectors per cluster 2^%d", 256-spc)
		}
		spc = 1 << (256 - spc)
	}
	if spc == 0 || bits.OnesCount64(uint64(spc)) != 1 {
		return f.corrupt(0, 13, "sectors per cluster %d", bs.SectorsPerCluster)
	}
	f.sectorSize, f.clusterSize = bps, bps*spc
	if f.clusterSize > 2<<20 {
		return f.corrupt(0, 13, "cluster size %d", f.clusterSize)
	}
	switch c := int64(bs.ClustersPerMFTRecord); {
	case c > 0 && c <= 64:
		f.recSize = c * f.clusterSize
	case c < 0 && c >= -31:
		f.recSize = 1 << -c
	default:
		return f.corrupt(0, 0x40, "clusters per MFT record %d", c)
	}
	if f.recSize < 512 || f.recSize > 64<<10 || bits.OnesCount64(uint64(f.recSize)) != 1 {
		return f.corrupt(0, 0x40, "MFT record size %d", f.recSize)
	}
	if bs.NumberOfSectors <= 0 || bs.NumberOfSectors > (1<<62)/bps {
		return f.corrupt(0, 0x28, "number of sectors %d", bs.NumberOfSectors)
	}
	f.clusters = bs.NumberOfSectors / spc
	if bs.MFTLCN <= 0 || bs.MFTLCN >= f.clusters {
		return f.corrupt(0, 0x30, "MFT at cluster %d of %d", bs.MFTLCN, f.clusters)
	}
	if vol := bs.NumberOfSectors * bps; vol > f.size {
		f.warnings = append(f.warnings, fmt.Sprintf("volume is truncated: the boot sector says %d bytes, there are %d", vol, f.size))
	}
	f.serial = bs.VolumeSerialNumber
	// Record 0 describes the $MFT: read it from where the boot sector says.
	off := bs.MFTLCN * f.clusterSize
	rec, err := f.readRecordAt(f.r, mftRecordMFT, off, off)
	if err != nil {
		if errors.Is(err, fsys.ErrCorrupt) {
			return err
		}
		return f.corrupt(0, off, "$MFT record: %v", err)
	}
	ext := rec.find(atData, "")
	if len(ext) == 0 || ext[0].resident {
		return f.corrupt(0, off, "$MFT has no non-resident $DATA")
	}
	f.mft, err = f.newStream(mftRecordMFT, ext)
	return err
}

// loadMFT completes the $MFT stream with extents that an attribute list
// places in extension records (read through the part already known).
func (f *FS) loadMFT() error {
	if f.mft.size < 16*f.recSize {
		return f.corrupt(0, f.mft.off, "$MFT of %d bytes holds fewer than the 16 system records", f.mft.size)
	}
	rec, err := f.readRecord(mftRecordMFT)
	if err != nil {
		return err
	}
	full, err := f.newStream(mftRecordMFT, rec.find(atData, ""))
	if err != nil {
		return err
	}
	f.mft = full
	return nil
}

// readVolumeInfo reads the label and the dirty flag from $Volume.
func (f *FS) readVolumeInfo() {
	rec, err := f.readRecord(mftRecordVolume)
	if err != nil {
		f.warnings = append(f.warnings, fmt.Sprintf("cannot read $Volume: %v", err))
		return
	}
	if a := rec.first(atVolumeName); a != nil && a.resident {
		f.label = utf16le(a.value)
	}
	if a := rec.first(atVolumeInformation); a != nil && a.resident && len(a.value) >= 12 {
		if le16(a.value[10:])&0x0001 != 0 {
			f.warnings = append(f.warnings, "volume is marked dirty (not cleanly unmounted, or chkdsk is scheduled); read as it is on disk")
		}
	}
}

// checkLogFile warns when $LogFile holds records not yet applied: its
// restart area has clients in use and is not flagged clean (ntfs-3g
// logfile.c, ntfs_check_logfile/ntfs_is_logfile_clean). A log that is all
// 0xFF (as mkntfs and ntfs-3g leave it) is empty, hence clean.
func (f *FS) checkLogFile() {
	ino, err := f.inode(mftRecordLogFile)
	if err != nil || ino.data == nil {
		f.warnings = append(f.warnings, fmt.Sprintf("cannot read $LogFile: %v", err))
		return
	}
	s, err := f.newStream(mftRecordLogFile, ino.data)
	if err != nil {
		f.warnings = append(f.warnings, fmt.Sprintf("cannot read $LogFile: %v", err))
		return
	}
	page := make([]byte, 4096)
	if n, err := s.ReadAt(page, 0); n < len(page) {
		f.warnings = append(f.warnings, fmt.Sprintf("cannot read $LogFile: %v", err))
		return
	}
	empty := true
	for _, c := range page {
		if c != 0xFF {
			empty = false
			break
		}
	}
	if empty {
		return
	}
	if string(page[:4]) != "RSTR" {
		f.warnings = append(f.warnings, fmt.Sprintf("$LogFile restart page has magic %q: the log may need replaying; read as it is on disk", page[:4]))
		return
	}
	// Restart page header: usa_ofs 4, usa_count 6, system_page_size 16,
	// restart_area_offset 24.
	psize := int64(le32(page[16:]))
	if psize >= 512 && psize <= 4096 && bits.OnesCount64(uint64(psize)) == 1 {
		if err := applyFixups(page[:psize], le16(page[4:]), le16(page[6:])); err != nil {
			f.warnings = append(f.warnings, fmt.Sprintf("$LogFile restart page: %v", err))
			return
		}
	}
	ra := int(le16(page[24:]))
	if ra+16 > len(page) {
		f.warnings = append(f.warnings, "$LogFile restart area is outside its page")
		return
	}
	// Restart area: client_in_use_list at 12, flags at 14.
	inUse, flags := le16(page[ra+12:]), le16(page[ra+14:])
	if inUse != 0xFFFF && flags&0x0002 == 0 {
		f.warnings = append(f.warnings, "$LogFile is not clean (Windows did not shut down cleanly or is hibernated); read as it is on disk, without replaying the log")
	}
}

// Root is the root directory's MFT record.
func (f *FS) Root() uint64 { return mftRecordRoot }

// Warnings are conditions that did not stop reading.
func (f *FS) Warnings() []string { return append([]string(nil), f.warnings...) }

// Close drops the caches.
func (f *FS) Close() error {
	f.inodes.Purge()
	f.dirs.Purge()
	return nil
}

// Info describes the volume; free clusters are counted from $Bitmap the
// first time.
func (f *FS) Info() *fsys.Info {
	f.infoOnce.Do(func() {
		f.info = fsys.Info{
			Type:      "ntfs",
			Label:     f.label,
			UUID:      fmt.Sprintf("%016X", f.serial),
			BlockSize: f.clusterSize,
			Blocks:    uint64(f.clusters),
			Files:     uint64(f.mft.size / f.recSize),
			NameMax:   255,
		}
		if free, err := f.countFree(); err == nil {
			f.info.FreeBlocks = uint64(free)
		}
	})
	info := f.info
	return &info
}

// countFree counts clear bits of $Bitmap (record 6) for the volume's
// clusters.
func (f *FS) countFree() (int64, error) {
	ino, err := f.inode(6)
	if err != nil || ino.data == nil {
		return 0, fmt.Errorf("no $Bitmap: %v", err)
	}
	s, err := f.newStream(6, ino.data)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	var used int64
	for off := int64(0); off*8 < f.clusters; off += int64(len(buf)) {
		n, err := s.ReadAt(buf, off)
		for i, c := range buf[:n] {
			if bitOff := (off + int64(i)) * 8; bitOff+8 > f.clusters {
				c &= byte(1<<(f.clusters-bitOff)) - 1
			}
			used += int64(bits.OnesCount8(c))
		}
		if err != nil {
			break
		}
	}
	return f.clusters - used, nil
}
