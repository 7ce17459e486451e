package ext

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strings"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/fsys"
)

// ErrNotExt is wrapped by Open's error when neither the primary superblock
// nor any backup has the ext magic: the volume holds something else.
var ErrNotExt = errors.New("not an ext2/3/4 filesystem")

// Detect says whether r (size bytes) starts like an ext2/3/4 volume: the
// superblock magic at byte 1080. Open may still find it damaged.
func Detect(r io.ReaderAt, size int64) bool {
	var b [2]byte
	if size < disklayout.SuperblockOffset+disklayout.SuperblockSize {
		return false
	}
	if _, err := r.ReadAt(b[:], disklayout.SuperblockOffset+0x38); err != nil {
		return false
	}
	return le.Uint16(b[:]) == disklayout.SuperMagic
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
		primaryErr = &fsys.CorruptError{FS: f.label, Off: disklayout.SuperblockOffset, Msg: "no ext2/3/4 superblock (bad magic)", Err: ErrNotExt}
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
	f.fsType = sb.Flavour()
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
