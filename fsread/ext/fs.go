package ext

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"

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

var le = binary.LittleEndian
