package ext

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/fsys"
)

// Options tune Open.
type Options struct {
	// Name is the volume's name in errors and warnings ("p1", "vg0/root").
	Name string
	// CacheBytes bounds the metadata block cache; 0 means
	// DefaultCacheBytes. Name indexes of linear directories get half as
	// much again.
	CacheBytes int64
	// NoJournalReplay reads the image as it is even when its journal needs
	// recovery (a warning says so). The default replays it.
	NoJournalReplay bool
}

// DefaultCacheBytes is the metadata cache budget when Options leave it 0.
const DefaultCacheBytes = 32 << 20

// Limits on what hostile metadata can make us do.
const (
	// maxDirEntries bounds one directory listing (a few hundred MiB of
	// names at most); real directories stay far below it.
	maxDirEntries = 10_000_000
	// maxDirBytes bounds a directory's size, and so the blocks a scan
	// may visit: 4 GiB (the kernel keeps directories under 2 GiB without
	// large_dir; with it a real one this size has tens of millions of
	// names).
	maxDirBytes = 4 << 30
	// maxXattrValue is the kernel's XATTR_SIZE_MAX.
	maxXattrValue = 64 << 10
	// maxWarnings bounds FS.Warnings.
	maxWarnings = 100
)

// FS is an open ext2/3/4 filesystem. It is safe for concurrent use.
type FS struct {
	label string // "ext4 p1": the volume in errors
	name  string // Options.Name
	dev   *device
	sb    *disklayout.Superblock
	cache *blockCache
	dirs  *dirCache

	bs        int // block size
	inodeSize int
	ipg       uint32 // inodes per group
	bpg       uint32 // blocks per group
	blocks    uint64 // blocks in the volume
	inodes    uint64 // highest valid inode number
	firstData uint64
	ngroups   uint64
	gdtBase   uint64 // first group descriptor block (after the superblock in use)

	csum       bool   // metadata_csum
	csumInodes bool   // inode checksums apply (metadata_csum, Linux creator)
	seed       uint32 // metadata_csum seed
	hashSeed   [4]uint32
	unsignedH  bool
	casefold   bool
	strictFold bool
	fsType     string

	mu       sync.Mutex
	warnings []string
}

// group is what reading needs from a group descriptor.
type group struct {
	inodeTable uint64
	flags      uint16
}

var _ fsys.FileSystem = (*FS)(nil)

// Open reads the ext2/3/4 filesystem on r, which is size bytes long.
// When the journal needs recovery it is replayed into memory first (unless
// opts.NoJournalReplay). r must stay readable until Close.
func Open(r io.ReaderAt, size int64, opts Options) (*FS, error) {
	f := &FS{dev: &device{r: r, size: size}, name: opts.Name}
	f.setLabel("ext")
	if err := f.loadSuper(); err != nil {
		return nil, err
	}
	budget := opts.CacheBytes
	if budget <= 0 {
		budget = DefaultCacheBytes
	}
	f.cache = newBlockCache(budget, f.bs)
	f.dirs = newDirCache(budget / 2)
	if err := f.loadGroups(); err != nil {
		return nil, err
	}
	if f.sb.HasIncompat(disklayout.IncompatRecover) {
		switch {
		case opts.NoJournalReplay:
			f.warn("journal needs recovery; reading the image without replaying it, as asked (recent changes may be missing)")
		case !f.sb.HasCompat(disklayout.CompatHasJournal) || f.sb.JournalInum == 0:
			f.warn("journal needs recovery but is on an external device; reading without it (recent changes may be missing)")
		default:
			if err := f.replayJournal(); err != nil {
				f.warn(fmt.Sprintf("journal replay failed, reading the image without it (recent changes may be missing): %v", err))
			}
		}
	}
	return f, nil
}

// loadSuper finds a valid superblock: the primary, or the first good
// backup when the primary is damaged (e2fsck's order).
func (f *FS) loadSuper() error {
	raw := make([]byte, disklayout.SuperblockSize)
	var primaryErr error
	if err := f.dev.readAt(raw, disklayout.SuperblockOffset); err != nil {
		primaryErr = f.corrupt(0, disklayout.SuperblockOffset, "cannot read superblock: %v", err)
	} else if sb, why := f.checkSuper(raw, -1); why == "" {
		return f.useSuper(sb)
	} else if why == "bad magic" {
		// Not ext, or a primary superblock wiped out: the backups tell.
		primaryErr = f.corrupt(0, disklayout.SuperblockOffset, "no ext2/3/4 superblock (bad magic)")
	} else {
		primaryErr = f.corrupt(0, disklayout.SuperblockOffset, "superblock: %s", why)
	}
	for log := uint32(0); log <= 6; log++ {
		bs := int64(1024) << log
		first := int64(0)
		if bs == 1024 {
			first = 1
		}
		for _, g := range []int64{1, 3, 5, 7, 9, 25, 27, 49} {
			off := (g*8*bs + first) * bs
			if off+disklayout.SuperblockSize > f.dev.size {
				break
			}
			if err := f.dev.readAt(raw, off); err != nil {
				break
			}
			sb, why := f.checkSuper(raw, int(log))
			if why != "" || sb.BlockGroupNr != uint16(g) {
				continue
			}
			if err := f.useSuper(sb); err != nil {
				continue
			}
			f.gdtBase = uint64(off/bs) + 1
			f.warn(fmt.Sprintf("%v; using the backup superblock of group %d at byte %d", primaryErr, g, off))
			return nil
		}
	}
	return primaryErr
}

// checkSuper decodes and validates a superblock; wantLog >= 0 requires
// that block size (for backups, found at a guessed block size).
func (f *FS) checkSuper(raw []byte, wantLog int) (*disklayout.Superblock, string) {
	sb, err := disklayout.DecodeSuperblock(raw)
	if err != nil {
		return nil, err.Error()
	}
	if sb.Magic != disklayout.SuperMagic {
		return nil, "bad magic"
	}
	if sb.LogBlockSize > 6 || (wantLog >= 0 && int(sb.LogBlockSize) != wantLog) {
		return nil, fmt.Sprintf("bad block size 2^(10+%d)", sb.LogBlockSize)
	}
	if sb.MetadataCsum() {
		if sb.ChecksumType != disklayout.ChecksumCrc32c {
			return nil, fmt.Sprintf("unknown checksum type %d", sb.ChecksumType)
		}
		if c := disklayout.SuperblockChecksum(raw); c != sb.Checksum {
			return nil, fmt.Sprintf("checksum mismatch (stored %#08x, computed %#08x)", sb.Checksum, c)
		}
	}
	bs := uint64(1024) << sb.LogBlockSize
	if sb.HasRoCompat(disklayout.RoCompatBigalloc) {
		if sb.LogClusterSize < sb.LogBlockSize || sb.LogClusterSize-sb.LogBlockSize > 16 ||
			sb.ClustersPerGroup == 0 || uint64(sb.ClustersPerGroup) > 8*bs ||
			uint64(sb.BlocksPerGroup) != uint64(sb.ClustersPerGroup)<<(sb.LogClusterSize-sb.LogBlockSize) {
			return nil, "bad bigalloc cluster geometry"
		}
	} else if sb.BlocksPerGroup < 8 || uint64(sb.BlocksPerGroup) > 8*bs {
		return nil, fmt.Sprintf("bad blocks per group %d", sb.BlocksPerGroup)
	}
	if sb.InodesPerGroup == 0 || uint64(sb.InodesPerGroup) > 8*bs {
		return nil, fmt.Sprintf("bad inodes per group %d", sb.InodesPerGroup)
	}
	is := sb.InodeSizeBytes()
	if is < disklayout.GoodOldInodeSize || uint64(is) > bs || bits.OnesCount(uint(is)) != 1 {
		return nil, fmt.Sprintf("bad inode size %d", is)
	}
	if sb.HasIncompat(disklayout.Incompat64bit) {
		ds := int(sb.DescSize)
		if ds < disklayout.GroupDescSize64 || uint64(ds) > min(bs, 1024) || bits.OnesCount(uint(ds)) != 1 {
			return nil, fmt.Sprintf("bad group descriptor size %d", ds)
		}
	}
	n := sb.BlocksCount()
	if n <= uint64(sb.FirstDataBlock) {
		return nil, fmt.Sprintf("bad block count %d", n)
	}
	if n > uint64(f.dev.size)/bs {
		return nil, fmt.Sprintf("block count %d exceeds the volume (%d bytes)", n, f.dev.size)
	}
	return sb, ""
}

// useSuper sets the geometry from a validated superblock and checks the
// features.
func (f *FS) useSuper(sb *disklayout.Superblock) error {
	const known = disklayout.IncompatFiletype | disklayout.IncompatRecover | disklayout.IncompatMetaBg |
		disklayout.IncompatExtents | disklayout.Incompat64bit | disklayout.IncompatMMP |
		disklayout.IncompatFlexBg | disklayout.IncompatEaInode | disklayout.IncompatCsumSeed |
		disklayout.IncompatLargedir | disklayout.IncompatInlineData | disklayout.IncompatEncrypt |
		disklayout.IncompatCasefold
	if u := sb.FeatureIncompat &^ known; u != 0 {
		var names []string
		for b := uint32(1); b != 0; b <<= 1 {
			if u&b != 0 {
				if n, ok := disklayout.IncompatNames[b]; ok {
					names = append(names, n)
				} else {
					names = append(names, fmt.Sprintf("incompat_%#x", b))
				}
			}
		}
		return f.unsupported(0, "incompatible features %s", strings.Join(names, ","))
	}
	f.sb = sb
	f.bs = 1024 << sb.LogBlockSize
	f.dev.bs = int64(f.bs)
	f.inodeSize = sb.InodeSizeBytes()
	f.ipg = sb.InodesPerGroup
	f.bpg = sb.BlocksPerGroup
	f.blocks = sb.BlocksCount()
	f.firstData = uint64(sb.FirstDataBlock)
	ngroups := (f.blocks - f.firstData + uint64(f.bpg) - 1) / uint64(f.bpg)
	f.inodes = min(uint64(sb.InodesCount), ngroups*uint64(f.ipg))
	f.csum = sb.MetadataCsum()
	f.csumInodes = f.csum && sb.CreatorOS == disklayout.OSLinux
	f.seed = sb.CsumSeed()
	f.hashSeed = sb.HashSeed
	f.unsignedH = sb.Flags&disklayout.FlagsUnsignedHash != 0
	f.casefold = sb.HasIncompat(disklayout.IncompatCasefold)
	f.strictFold = sb.EncodingFlags&disklayout.EncodingStrict != 0
	f.fsType = fsTypeOf(sb)
	f.setLabel(f.fsType)
	if f.gdtBase == 0 {
		// The descriptor table follows the primary superblock's block.
		f.gdtBase = f.firstData + 1
		if f.bs == 1024 && f.firstData == 0 {
			f.gdtBase = 2 // 1 KiB blocks with bigalloc: superblock in block 1
		}
	}
	return nil
}

// fsTypeOf names the flavour as blkid does: ext4 when any feature ext3
// lacks is set, else ext3 with a journal, else ext2.
func fsTypeOf(sb *disklayout.Superblock) string {
	const ext3Incompat = disklayout.IncompatFiletype | disklayout.IncompatRecover | disklayout.IncompatMetaBg
	const ext3RoCompat = disklayout.RoCompatSparseSuper | disklayout.RoCompatLargeFile | disklayout.RoCompatBtreeDir
	switch {
	case sb.FeatureIncompat&^ext3Incompat != 0 || sb.FeatureRoCompat&^ext3RoCompat != 0:
		return "ext4"
	case sb.HasCompat(disklayout.CompatHasJournal):
		return "ext3"
	}
	return "ext2"
}

// hasSuper says whether group g holds a superblock backup (and so its
// descriptors start one block later): ext4_bg_has_super.
func (f *FS) hasSuper(g uint64) bool {
	switch {
	case g == 0:
		return true
	case f.sb.HasCompat(disklayout.CompatSparseSuper2):
		return g == uint64(f.sb.BackupBgs[0]) || g == uint64(f.sb.BackupBgs[1])
	case g <= 1 || !f.sb.HasRoCompat(disklayout.RoCompatSparseSuper):
		return true
	case g&1 == 0:
		return false
	}
	for _, p := range []uint64{3, 5, 7} {
		n := p
		for n < g {
			n *= p
		}
		if n == g {
			return true
		}
	}
	return false
}

// descBlock is where the descriptor block of meta group m lives
// (ext4 descriptor_loc): after the superblock, or with meta_bg in the
// first group of the meta group, after its superblock backup if any.
func (f *FS) descBlock(m uint64, perBlock uint64) uint64 {
	if !f.sb.HasIncompat(disklayout.IncompatMetaBg) || m < uint64(f.sb.FirstMetaBg) {
		return f.gdtBase + m
	}
	g := m * perBlock
	b := g*uint64(f.bpg) + f.firstData
	if f.hasSuper(g) {
		b++
	}
	return b
}

// group reads the descriptor of group g through the block cache (they are
// read on demand, so a volume's size costs no memory up front) and checks
// its checksum and inode table location. A bad descriptor spoils only the
// inodes of its group.
func (f *FS) group(g uint64) (group, error) {
	if g >= f.ngroups {
		return group{}, fmt.Errorf("group %d past the last group %d", g, f.ngroups-1)
	}
	ds := uint64(f.sb.DescSizeBytes())
	perBlock := uint64(f.bs) / ds
	blk := f.descBlock(g/perBlock, perBlock)
	if blk >= f.blocks {
		return group{}, fmt.Errorf("group %d descriptor block %d is outside the volume", g, blk)
	}
	cb, err := f.block(blk)
	if err != nil {
		return group{}, fmt.Errorf("reading group %d descriptor: %v", g, err)
	}
	i := g % perBlock
	raw := cb.data[i*ds : (i+1)*ds]
	gd, _ := disklayout.DecodeGroupDesc(raw)
	gr := group{inodeTable: gd.InodeTable(), flags: gd.Flags}
	if f.csum || f.sb.HasRoCompat(disklayout.RoCompatGdtCsum) {
		if c := disklayout.GroupDescChecksum(f.sb, f.seed, uint32(g), raw); c != gd.Checksum {
			return gr, fmt.Errorf("group %d descriptor checksum mismatch (stored %#04x, computed %#04x)", g, gd.Checksum, c)
		}
	}
	itBlocks := (uint64(f.ipg)*uint64(f.inodeSize) + uint64(f.bs) - 1) / uint64(f.bs)
	if gr.inodeTable < f.firstData || gr.inodeTable >= f.blocks || f.blocks-gr.inodeTable < itBlocks {
		return gr, fmt.Errorf("group %d inode table at block %d is outside the volume", g, gr.inodeTable)
	}
	return gr, nil
}

// maxGroupScan bounds the descriptors Open checks to warn about damage up
// front (all of them on volumes up to 8 TiB with 4 KiB blocks).
const maxGroupScan = 1 << 16

// loadGroups checks the group descriptors at Open: the descriptor blocks
// must be inside the volume, and damaged descriptors are named in the
// warnings (their inodes will fail with the reason).
func (f *FS) loadGroups() error {
	f.ngroups = (f.blocks - f.firstData + uint64(f.bpg) - 1) / uint64(f.bpg)
	ds := uint64(f.sb.DescSizeBytes())
	perBlock := uint64(f.bs) / ds
	for m := uint64(0); m*perBlock < f.ngroups; m++ {
		if blk := f.descBlock(m, perBlock); blk >= f.blocks {
			return f.corrupt(0, f.blockOff(blk), "group descriptor block %d of meta group %d is outside the volume", blk, m)
		}
		if m*perBlock > maxGroupScan {
			break
		}
	}
	bad := 0
	for g := uint64(0); g < min(f.ngroups, maxGroupScan); g++ {
		if _, err := f.group(g); err != nil {
			if bad++; bad <= 10 {
				f.warn(err.Error() + " (its inodes are unreadable)")
			}
		}
	}
	if bad > 10 {
		f.warn(fmt.Sprintf("%d group descriptors are damaged in all", bad))
	}
	return nil
}

func (f *FS) setLabel(typ string) {
	f.label = typ
	if f.name != "" {
		f.label += " " + f.name
	}
}

func (f *FS) warn(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.warnings) < maxWarnings {
		f.warnings = append(f.warnings, f.label+": "+s)
	}
}

// Root is inode 2.
func (f *FS) Root() uint64 { return 2 }

// Warnings lists conditions that did not stop reading (backup superblock in
// use, journal replayed or not, damaged group descriptors).
func (f *FS) Warnings() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.warnings...)
}

// Close drops the caches.
func (f *FS) Close() error {
	f.cache.clear()
	f.dirs.clear()
	return nil
}

// Info describes the filesystem.
func (f *FS) Info() *fsys.Info {
	sb := f.sb
	var feats []string
	for _, set := range []struct {
		v     uint32
		names map[uint32]string
	}{{sb.FeatureCompat, disklayout.CompatNames}, {sb.FeatureIncompat, disklayout.IncompatNames}, {sb.FeatureRoCompat, disklayout.RoCompatNames}} {
		for b, n := range set.names {
			if set.v&b != 0 {
				feats = append(feats, n)
			}
		}
	}
	sort.Strings(feats)
	u := sb.UUID
	info := &fsys.Info{
		Type:       f.fsType,
		Label:      cString(sb.VolumeName[:]),
		UUID:       fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]),
		BlockSize:  int64(f.bs),
		Blocks:     f.blocks,
		FreeBlocks: sb.FreeBlocksCount(),
		Files:      uint64(sb.InodesCount),
		FreeFiles:  uint64(sb.FreeInodesCount),
		Features:   feats,
		NameMax:    disklayout.NameMax,
	}
	if sb.Mtime != 0 {
		info.LastMount = time.Unix(int64(sb.Mtime)|int64(sb.MtimeHi)<<32, 0).UTC()
	}
	return info
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

var le = binary.LittleEndian
