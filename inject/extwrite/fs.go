package extwrite

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Errors; test with errors.Is.
var (
	// ErrRefused means the filesystem, directory or file is in a state or
	// uses a feature this writer does not handle safely; nothing was
	// changed. The error text says why.
	ErrRefused = errors.New("refused")
	// ErrCorrupt means metadata the writer needs is inconsistent; run
	// e2fsck first.
	ErrCorrupt = errors.New("filesystem metadata is inconsistent")
	// ErrNoSpace means the filesystem has too few free blocks or inodes.
	ErrNoSpace = errors.New("no space left on the filesystem")
	// ErrExist means a name to create is already there.
	ErrExist = errors.New("already exists")
	// ErrNotExist means a name looked up is not there.
	ErrNotExist = errors.New("does not exist")
)

// RefusedError lists why a filesystem cannot be written; it wraps
// ErrRefused.
type RefusedError struct {
	FS      string
	Reasons []string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s: refusing to write: %s", e.FS, strings.Join(e.Reasons, "; "))
}

func (e *RefusedError) Unwrap() error { return ErrRefused }

// Options change how Open works.
type Options struct {
	// Name is the volume in errors ("p1").
	Name string
	// Now is the clock for ctime and crtime; nil means time.Now.
	Now func() time.Time
}

// FS is an ext2/3/4 filesystem open for a write transaction. It is not
// safe for concurrent use.
type FS struct {
	label string
	st    *stage
	sb    *disklayout.Superblock
	sbRaw []byte
	now   time.Time

	bs        int
	blocks    uint64
	firstData uint64
	bpg       uint64
	ipg       uint64
	inodes    uint64
	ngroups   uint64
	inodeSize int
	descSize  int
	descPer   uint64 // descriptors per block
	gdtBlocks uint64 // blocks of the whole descriptor table
	itBlocks  uint64 // inode table blocks per group
	csum      bool   // metadata_csum
	gdtCsum   bool   // uninit_bg (crc16 descriptors, uninit flags)
	seed      uint32
	hashSeed  [4]uint32
	unsignedH bool

	groups map[uint64]*group
	// freed are runs of blocks the transaction freed; they are not handed
	// out again before the changes are written.
	freed           []blockRun
	freeBlocksDelta int64 // for the superblock counters
	freeInodesDelta int64
	finished        bool

	events []Event
}

type blockRun struct{ start, n uint64 }

// Open reads the superblock of the ext filesystem on dev (size bytes) and
// checks that it can be written.
func Open(dev Device, size int64, opts Options) (*FS, error) {
	f := &FS{label: "ext", groups: map[uint64]*group{}}
	if opts.Name != "" {
		f.label += " " + opts.Name
	}
	f.now = time.Now()
	if opts.Now != nil {
		f.now = opts.Now()
	}
	raw := make([]byte, disklayout.SuperblockSize)
	if size < disklayout.SuperblockOffset+disklayout.SuperblockSize {
		return nil, f.corrupt("volume of %d bytes is too small for a superblock", size)
	}
	tmp := &stage{dev: dev, name: f.label}
	if err := tmp.readDev(raw, disklayout.SuperblockOffset); err != nil {
		return nil, err
	}
	sb, err := disklayout.DecodeSuperblock(raw)
	if err != nil {
		return nil, f.corrupt("superblock: %v", err)
	}
	if sb.Magic != disklayout.SuperMagic {
		return nil, f.corrupt("no ext2/3/4 superblock (bad magic %#x)", sb.Magic)
	}
	f.sb, f.sbRaw = sb, raw
	f.label = sb.Flavour()
	if opts.Name != "" {
		f.label += " " + opts.Name
	}
	if why := f.refusals(); len(why) > 0 {
		return nil, &RefusedError{FS: f.label, Reasons: why}
	}
	if err := f.geometry(size); err != nil {
		return nil, err
	}
	f.st = newStage(dev, f.bs, f.blocks, f.label)
	if err := f.checkJournal(); err != nil {
		return nil, err
	}
	return f, nil
}

// geometry checks and derives the layout from the superblock.
func (f *FS) geometry(size int64) error {
	sb := f.sb
	if sb.MetadataCsum() {
		if sb.ChecksumType != disklayout.ChecksumCrc32c {
			return f.refuse("unknown superblock checksum type %d", sb.ChecksumType)
		}
		if c := disklayout.SuperblockChecksum(f.sbRaw); c != sb.Checksum {
			return f.corrupt("superblock checksum mismatch (stored %#08x, computed %#08x)", sb.Checksum, c)
		}
	}
	if sb.LogBlockSize > 6 {
		return f.corrupt("bad block size 2^(10+%d)", sb.LogBlockSize)
	}
	f.bs = 1024 << sb.LogBlockSize
	bs := uint64(f.bs)
	f.blocks = sb.BlocksCount()
	f.firstData = uint64(sb.FirstDataBlock)
	f.bpg = uint64(sb.BlocksPerGroup)
	f.ipg = uint64(sb.InodesPerGroup)
	f.inodeSize = sb.InodeSizeBytes()
	f.descSize = sb.DescSizeBytes()
	switch {
	case f.bpg < 8 || f.bpg > 8*bs || f.bpg%8 != 0:
		return f.corrupt("bad blocks per group %d", f.bpg)
	case f.ipg == 0 || f.ipg > 8*bs || f.ipg%8 != 0:
		return f.corrupt("bad inodes per group %d", f.ipg)
	case f.inodeSize < disklayout.GoodOldInodeSize || uint64(f.inodeSize) > bs || bits.OnesCount(uint(f.inodeSize)) != 1:
		return f.corrupt("bad inode size %d", f.inodeSize)
	case f.descSize < disklayout.GroupDescSize32 || uint64(f.descSize) > min(bs, 1024) || bits.OnesCount(uint(f.descSize)) != 1:
		return f.corrupt("bad group descriptor size %d", f.descSize)
	case f.blocks <= f.firstData || f.blocks > uint64(size)/bs:
		return f.corrupt("block count %d does not fit the volume (%d bytes)", f.blocks, size)
	case f.firstData != 0 && !(f.bs == 1024 && f.firstData == 1):
		return f.corrupt("bad first data block %d", f.firstData)
	case f.bs == 1024 && f.firstData != 1:
		return f.corrupt("first data block %d with 1 KiB blocks", f.firstData)
	}
	f.ngroups = (f.blocks - f.firstData + f.bpg - 1) / f.bpg
	f.inodes = uint64(sb.InodesCount)
	if f.inodes != f.ngroups*f.ipg {
		return f.corrupt("inode count %d is not %d groups of %d", f.inodes, f.ngroups, f.ipg)
	}
	f.descPer = bs / uint64(f.descSize)
	f.gdtBlocks = (f.ngroups + f.descPer - 1) / f.descPer
	f.itBlocks = (f.ipg*uint64(f.inodeSize) + bs - 1) / bs
	f.csum = sb.MetadataCsum()
	f.gdtCsum = f.csum || sb.HasRoCompat(disklayout.RoCompatGdtCsum)
	f.seed = sb.CsumSeed()
	f.hashSeed = sb.HashSeed
	f.unsignedH = sb.Flags&disklayout.FlagsUnsignedHash != 0
	if sb.FirstInode() < disklayout.GoodOldFirstIno || uint64(sb.FirstInode()) > f.inodes {
		return f.corrupt("bad first inode %d", sb.FirstInode())
	}
	if f.inodeSize > disklayout.InodeBaseSize && f.extraIsize() < 4 {
		return f.corrupt("bad i_extra_isize %d for %d-byte inodes", f.extraIsize(), f.inodeSize)
	}
	return nil
}

// Superblock s_state bits (super.rst).
const (
	stateValid  = 0x1
	stateError  = 0x2
	stateOrphan = 0x4
)

// What the writer maintains. Anything else is refused by name.
const (
	handledCompat = disklayout.CompatDirPrealloc | disklayout.CompatImagicInodes |
		disklayout.CompatHasJournal | disklayout.CompatExtAttr | disklayout.CompatResizeInode |
		disklayout.CompatDirIndex | disklayout.CompatSparseSuper2 | disklayout.CompatFastCommit |
		disklayout.CompatStableInodes | disklayout.CompatOrphanFile
	handledIncompat = disklayout.IncompatFiletype | disklayout.IncompatMetaBg |
		disklayout.IncompatExtents | disklayout.Incompat64bit | disklayout.IncompatFlexBg |
		disklayout.IncompatEaInode | disklayout.IncompatCsumSeed | disklayout.IncompatLargedir |
		disklayout.IncompatInlineData | disklayout.IncompatEncrypt | disklayout.IncompatCasefold
	handledRoCompat = disklayout.RoCompatSparseSuper | disklayout.RoCompatLargeFile |
		disklayout.RoCompatBtreeDir | disklayout.RoCompatHugeFile | disklayout.RoCompatGdtCsum |
		disklayout.RoCompatDirNlink | disklayout.RoCompatExtraIsize | disklayout.RoCompatMetadataCsum |
		disklayout.RoCompatProject | disklayout.RoCompatVerity
)

// Why features are refused, for the ones with a known reason.
var featureWhy = map[string]string{
	"needs_recovery": "the journal needs recovery (mount the filesystem once in the VM, or run e2fsck, first)",
	"bigalloc":       "bigalloc (cluster allocation is not implemented)",
	"quota":          "quota (the usage accounting in the hidden quota inodes would go stale)",
	"mmp":            "mmp (multi-mount protection is not implemented)",
	"journal_dev":    "journal_dev (this is an external journal device, not a filesystem)",
	"compression":    "compression",
	"dirdata":        "dirdata",
	"snapshot":       "snapshot (next3 snapshots)",
	"shared_blocks":  "shared_blocks (blocks shared between files cannot be freed safely)",
	"read-only":      "read-only (the filesystem is marked read-only)",
	"replica":        "replica",
	"orphan_present": "orphan_present (the orphan file lists inodes still to be released; mount it once or run e2fsck)",
}

// refusals lists why the filesystem cannot be written, empty when it can.
func (f *FS) refusals() []string {
	sb := f.sb
	var why []string
	add := func(mask uint32, names map[uint32]string, prefix string) {
		for b := uint32(1); b != 0; b <<= 1 {
			if mask&b == 0 {
				continue
			}
			n, ok := names[b]
			if !ok {
				n = fmt.Sprintf("%s_%#x", prefix, b)
			}
			w := featureWhy[n]
			if w == "" {
				w = n + " (not handled by the writer)"
			}
			why = append(why, "feature "+w)
		}
	}
	add(sb.FeatureIncompat&^handledIncompat, disklayout.IncompatNames, "incompat")
	add(sb.FeatureRoCompat&^handledRoCompat, disklayout.RoCompatNames, "ro_compat")
	add(sb.FeatureCompat&^handledCompat, disklayout.CompatNames, "compat")
	if sb.State&stateError != 0 {
		why = append(why, "the error flag is set (the kernel found errors; run e2fsck first)")
	} else if sb.ErrorCount > 0 {
		why = append(why, fmt.Sprintf("the kernel recorded %d errors since the last check (run e2fsck first)", sb.ErrorCount))
	}
	if sb.State&stateValid == 0 && !sb.HasIncompat(disklayout.IncompatRecover) {
		why = append(why, "not cleanly unmounted (run e2fsck first)")
	}
	if sb.State&stateOrphan != 0 || sb.LastOrphan != 0 {
		why = append(why, "the orphan list is not empty (deleted files still to be released; mount it once or run e2fsck)")
	}
	if sb.CreatorOS != disklayout.OSLinux {
		why = append(why, fmt.Sprintf("created by OS %d, not Linux (other inode layouts)", sb.CreatorOS))
	}
	if sb.RevLevel > 1 {
		why = append(why, fmt.Sprintf("unknown revision %d", sb.RevLevel))
	}
	return why
}

// checkJournal refuses a journal with transactions still to replay even
// when the superblock does not say so (jbd2 superblock s_start, which
// e2fsck checks too).
func (f *FS) checkJournal() error {
	if !f.sb.HasCompat(disklayout.CompatHasJournal) || f.sb.JournalInum == 0 {
		return nil
	}
	n, err := f.readInode(uint32(f.sb.JournalInum))
	if err != nil {
		return fmt.Errorf("journal inode: %w", err)
	}
	phys, err := f.mapBlock(n, 0)
	if err != nil {
		return fmt.Errorf("journal inode: %w", err)
	}
	if phys == 0 {
		return f.corrupt("journal inode %d has no first block", f.sb.JournalInum)
	}
	b, err := f.st.read(phys)
	if err != nil {
		return err
	}
	be := binary.BigEndian
	const jbd2Magic = 0xC03B3998
	if be.Uint32(b[0:]) != jbd2Magic {
		return f.corrupt("journal superblock has a bad magic")
	}
	if t := be.Uint32(b[4:]); t != 3 && t != 4 {
		return f.corrupt("journal superblock has block type %d", t)
	}
	if s := be.Uint32(b[0x1C:]); s != 0 {
		return &RefusedError{FS: f.label, Reasons: []string{"the journal holds transactions not yet written in place (mount the filesystem once in the VM, or run e2fsck, first)"}}
	}
	return nil
}

func (f *FS) corrupt(format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", f.label, fmt.Sprintf(format, args...), ErrCorrupt)
}

func (f *FS) refuse(format string, args ...any) error {
	return &RefusedError{FS: f.label, Reasons: []string{fmt.Sprintf(format, args...)}}
}

// extraIsize is i_extra_isize for new inodes: what the superblock wants,
// at least the 32 bytes that hold every field the kernel knows.
func (f *FS) extraIsize() int {
	if f.inodeSize <= disklayout.InodeBaseSize {
		return 0
	}
	x := max(32, int(f.sb.WantExtraIsize), int(f.sb.MinExtraIsize))
	x = min(x, f.inodeSize-disklayout.InodeBaseSize)
	return x &^ 3
}

// has* are the features the writer looks at.
func (f *FS) hasExtents() bool  { return f.sb.HasIncompat(disklayout.IncompatExtents) }
func (f *FS) hasFiletype() bool { return f.sb.HasIncompat(disklayout.IncompatFiletype) }
func (f *FS) hasDirIndex() bool { return f.sb.HasCompat(disklayout.CompatDirIndex) }

// BlockSize is the filesystem block size.
func (f *FS) BlockSize() int { return f.bs }

// Label names the filesystem in messages ("ext4 p1").
func (f *FS) Label() string { return f.label }

func randomU32() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:])
}
