package disklayout

import (
	"encoding/binary"
	"errors"
)

// Superblock geometry ("The Super Block", Documentation/filesystems/ext4/super.rst).
const (
	SuperblockOffset = 1024 // bytes from the start of the volume
	SuperblockSize   = 1024
	SuperMagic       = 0xEF53
	// superblockCsumOff is where s_checksum lives; the checksum covers
	// everything before it.
	superblockCsumOff = 0x3FC
)

// Superblock is struct ext4_super_block, 1024 bytes.
type Superblock struct {
	InodesCount       uint32
	BlocksCountLo     uint32
	RBlocksCountLo    uint32
	FreeBlocksCountLo uint32
	FreeInodesCount   uint32
	FirstDataBlock    uint32
	LogBlockSize      uint32
	LogClusterSize    uint32
	BlocksPerGroup    uint32
	ClustersPerGroup  uint32
	InodesPerGroup    uint32
	Mtime             uint32
	Wtime             uint32
	MntCount          uint16
	MaxMntCount       int16
	Magic             uint16
	State             uint16
	Errors            uint16
	MinorRevLevel     uint16
	Lastcheck         uint32
	Checkinterval     uint32
	CreatorOS         uint32
	RevLevel          uint32
	DefResuid         uint16
	DefResgid         uint16
	FirstIno          uint32
	InodeSize         uint16
	BlockGroupNr      uint16
	FeatureCompat     uint32
	FeatureIncompat   uint32
	FeatureRoCompat   uint32
	UUID              [16]byte
	VolumeName        [16]byte
	LastMounted       [64]byte
	AlgorithmUsage    uint32
	PreallocBlocks    uint8
	PreallocDirBlocks uint8
	ReservedGdtBlocks uint16
	JournalUUID       [16]byte
	JournalInum       uint32
	JournalDev        uint32
	LastOrphan        uint32
	HashSeed          [4]uint32
	DefHashVersion    uint8
	JnlBackupType     uint8
	DescSize          uint16
	DefaultMountOpts  uint32
	FirstMetaBg       uint32
	MkfsTime          uint32
	JnlBlocks         [17]uint32
	BlocksCountHi     uint32
	RBlocksCountHi    uint32
	FreeBlocksCountHi uint32
	MinExtraIsize     uint16
	WantExtraIsize    uint16
	Flags             uint32
	RaidStride        uint16
	MmpInterval       uint16
	MmpBlock          uint64
	RaidStripeWidth   uint32
	LogGroupsPerFlex  uint8
	ChecksumType      uint8
	EncryptionLevel   uint8
	ReservedPad       uint8
	KbytesWritten     uint64
	SnapshotInum      uint32
	SnapshotID        uint32
	SnapshotRBlocks   uint64
	SnapshotList      uint32
	ErrorCount        uint32
	FirstErrorTime    uint32
	FirstErrorIno     uint32
	FirstErrorBlock   uint64
	FirstErrorFunc    [32]byte
	FirstErrorLine    uint32
	LastErrorTime     uint32
	LastErrorIno      uint32
	LastErrorLine     uint32
	LastErrorBlock    uint64
	LastErrorFunc     [32]byte
	MountOpts         [64]byte
	UsrQuotaInum      uint32
	GrpQuotaInum      uint32
	OverheadClusters  uint32
	BackupBgs         [2]uint32
	EncryptAlgos      [4]uint8
	EncryptPwSalt     [16]byte
	LpfIno            uint32
	PrjQuotaInum      uint32
	ChecksumSeed      uint32
	WtimeHi           uint8
	MtimeHi           uint8
	MkfsTimeHi        uint8
	LastcheckHi       uint8
	FirstErrorTimeHi  uint8
	LastErrorTimeHi   uint8
	FirstErrorErrcode uint8
	LastErrorErrcode  uint8
	Encoding          uint16
	EncodingFlags     uint16
	OrphanFileInum    uint32
	Reserved          [94]uint32
	Checksum          uint32
}

// Feature flags (super.rst, "s_feature_compat" and friends).
const (
	CompatDirPrealloc  = 0x1
	CompatImagicInodes = 0x2
	CompatHasJournal   = 0x4
	CompatExtAttr      = 0x8
	CompatResizeInode  = 0x10
	CompatDirIndex     = 0x20
	CompatSparseSuper2 = 0x200
	CompatFastCommit   = 0x400
	CompatStableInodes = 0x800
	CompatOrphanFile   = 0x1000

	IncompatCompression = 0x1
	IncompatFiletype    = 0x2
	IncompatRecover     = 0x4
	IncompatJournalDev  = 0x8
	IncompatMetaBg      = 0x10
	IncompatExtents     = 0x40
	Incompat64bit       = 0x80
	IncompatMMP         = 0x100
	IncompatFlexBg      = 0x200
	IncompatEaInode     = 0x400
	IncompatDirdata     = 0x1000
	IncompatCsumSeed    = 0x2000
	IncompatLargedir    = 0x4000
	IncompatInlineData  = 0x8000
	IncompatEncrypt     = 0x10000
	IncompatCasefold    = 0x20000

	RoCompatSparseSuper   = 0x1
	RoCompatLargeFile     = 0x2
	RoCompatBtreeDir      = 0x4
	RoCompatHugeFile      = 0x8
	RoCompatGdtCsum       = 0x10
	RoCompatDirNlink      = 0x20
	RoCompatExtraIsize    = 0x40
	RoCompatHasSnapshot   = 0x80
	RoCompatQuota         = 0x100
	RoCompatBigalloc      = 0x200
	RoCompatMetadataCsum  = 0x400
	RoCompatReplica       = 0x800
	RoCompatReadonly      = 0x1000
	RoCompatProject       = 0x2000
	RoCompatSharedBlocks  = 0x4000
	RoCompatVerity        = 0x8000
	RoCompatOrphanPresent = 0x10000
)

// Superblock s_flags, s_creator_os and s_encoding values.
const (
	FlagsSignedHash   = 0x1
	FlagsUnsignedHash = 0x2
	OSLinux           = 0
	EncodingUTF8      = 1 // EXT4_ENC_UTF8_12_1
	EncodingStrict    = 0x1
	ChecksumCrc32c    = 1
	GoodOldRev        = 0
	GoodOldInodeSize  = 128
	GoodOldFirstIno   = 11
)

// FeatureNames maps each known feature bit to the name mke2fs and
// tune2fs use, for Info.Features.
var (
	CompatNames = map[uint32]string{
		CompatDirPrealloc: "dir_prealloc", CompatImagicInodes: "imagic_inodes",
		CompatHasJournal: "has_journal", CompatExtAttr: "ext_attr",
		CompatResizeInode: "resize_inode", CompatDirIndex: "dir_index",
		CompatSparseSuper2: "sparse_super2", CompatFastCommit: "fast_commit",
		CompatStableInodes: "stable_inodes", CompatOrphanFile: "orphan_file",
	}
	IncompatNames = map[uint32]string{
		IncompatCompression: "compression", IncompatFiletype: "filetype",
		IncompatRecover: "needs_recovery", IncompatJournalDev: "journal_dev",
		IncompatMetaBg: "meta_bg", IncompatExtents: "extent", Incompat64bit: "64bit",
		IncompatMMP: "mmp", IncompatFlexBg: "flex_bg", IncompatEaInode: "ea_inode",
		IncompatDirdata: "dirdata", IncompatCsumSeed: "metadata_csum_seed",
		IncompatLargedir: "large_dir", IncompatInlineData: "inline_data",
		IncompatEncrypt: "encrypt", IncompatCasefold: "casefold",
	}
	RoCompatNames = map[uint32]string{
		RoCompatSparseSuper: "sparse_super", RoCompatLargeFile: "large_file",
		RoCompatBtreeDir: "btree_dir", RoCompatHugeFile: "huge_file",
		RoCompatGdtCsum: "uninit_bg", RoCompatDirNlink: "dir_nlink",
		RoCompatExtraIsize: "extra_isize", RoCompatHasSnapshot: "snapshot",
		RoCompatQuota: "quota", RoCompatBigalloc: "bigalloc",
		RoCompatMetadataCsum: "metadata_csum", RoCompatReplica: "replica",
		RoCompatReadonly: "read-only", RoCompatProject: "project",
		RoCompatSharedBlocks: "shared_blocks", RoCompatVerity: "verity",
		RoCompatOrphanPresent: "orphan_present",
	}
)

var errShort = errors.New("buffer too short")

// DecodeSuperblock decodes the 1024 bytes at SuperblockOffset. It checks
// nothing but the length; see Superblock.Valid.
func DecodeSuperblock(b []byte) (*Superblock, error) {
	if len(b) < SuperblockSize {
		return nil, errShort
	}
	sb := new(Superblock)
	if _, err := binary.Decode(b[:SuperblockSize], binary.LittleEndian, sb); err != nil {
		return nil, err
	}
	return sb, nil
}

// SuperblockChecksum computes s_checksum over raw superblock bytes
// (metadata_csum: crc32c(~0, bytes before s_checksum)).
func SuperblockChecksum(b []byte) uint32 {
	return Crc32c(^uint32(0), b[:superblockCsumOff])
}

// Has reports feature bits.
func (s *Superblock) HasCompat(f uint32) bool   { return s.FeatureCompat&f != 0 }
func (s *Superblock) HasIncompat(f uint32) bool { return s.FeatureIncompat&f != 0 }
func (s *Superblock) HasRoCompat(f uint32) bool { return s.FeatureRoCompat&f != 0 }

// BlocksCount is s_blocks_count with the high half when 64bit is set.
func (s *Superblock) BlocksCount() uint64 {
	n := uint64(s.BlocksCountLo)
	if s.HasIncompat(Incompat64bit) {
		n |= uint64(s.BlocksCountHi) << 32
	}
	return n
}

// FreeBlocksCount is s_free_blocks_count likewise.
func (s *Superblock) FreeBlocksCount() uint64 {
	n := uint64(s.FreeBlocksCountLo)
	if s.HasIncompat(Incompat64bit) {
		n |= uint64(s.FreeBlocksCountHi) << 32
	}
	return n
}

// InodeSizeBytes is s_inode_size, 128 for revision 0.
func (s *Superblock) InodeSizeBytes() int {
	if s.RevLevel == GoodOldRev {
		return GoodOldInodeSize
	}
	return int(s.InodeSize)
}

// FirstInode is the first non-reserved inode.
func (s *Superblock) FirstInode() uint32 {
	if s.RevLevel == GoodOldRev {
		return GoodOldFirstIno
	}
	return s.FirstIno
}

// DescSizeBytes is the group descriptor size: 32, or s_desc_size with 64bit.
func (s *Superblock) DescSizeBytes() int {
	if s.HasIncompat(Incompat64bit) {
		return int(s.DescSize)
	}
	return GroupDescSize32
}

// MetadataCsum says whether metadata_csum checksums are present.
func (s *Superblock) MetadataCsum() bool { return s.HasRoCompat(RoCompatMetadataCsum) }

// CsumSeed is the seed every metadata_csum checksum starts from: the
// stored one with metadata_csum_seed, else crc32c(~0, uuid).
func (s *Superblock) CsumSeed() uint32 {
	if s.HasIncompat(IncompatCsumSeed) {
		return s.ChecksumSeed
	}
	return Crc32c(^uint32(0), s.UUID[:])
}

// GroupHasSuper says whether block group g holds a superblock (the
// primary or a backup, followed by descriptor blocks): ext4_bg_has_super,
// with sparse_super and sparse_super2.
func (s *Superblock) GroupHasSuper(g uint64) bool {
	switch {
	case g == 0:
		return true
	case s.HasCompat(CompatSparseSuper2):
		return g == uint64(s.BackupBgs[0]) || g == uint64(s.BackupBgs[1])
	case g <= 1 || !s.HasRoCompat(RoCompatSparseSuper):
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

// Flavour names the filesystem as blkid does: ext4 when any feature ext3
// lacks is set, else ext3 with a journal, else ext2.
func (s *Superblock) Flavour() string {
	const ext3Incompat = IncompatFiletype | IncompatRecover | IncompatMetaBg
	const ext3RoCompat = RoCompatSparseSuper | RoCompatLargeFile | RoCompatBtreeDir
	switch {
	case s.FeatureIncompat&^ext3Incompat != 0 || s.FeatureRoCompat&^ext3RoCompat != 0:
		return "ext4"
	case s.HasCompat(CompatHasJournal):
		return "ext3"
	}
	return "ext2"
}
