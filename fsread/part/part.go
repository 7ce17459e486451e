package part

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// MaxPartitions is the highest partition number Linux creates
// (DISK_MAX_PARTS 256 minus the whole disk). Entries past it are ignored, as
// the kernel ignores them; it also bounds the work a hostile table causes.
const MaxPartitions = 255

// ErrNoTable means the disk has no partition table vmmount recognizes: no
// MBR signature and no GPT, or a sector 0 that is the boot sector of a FAT,
// exFAT or NTFS filesystem spanning the whole disk.
var ErrNoTable = errors.New("no partition table")

// Table is a disk's partition table.
type Table struct {
	Scheme     string // "gpt" or "dos" (the names blkid and sfdisk use)
	SectorSize int    // logical sector size the table is written in
	// DiskID is the GPT disk GUID or the MBR disk signature ("1234abcd"),
	// the PTUUID of lsblk.
	DiskID string
	// Hybrid is set for a GPT disk whose MBR lists partitions besides the
	// protective one. The GPT is what counts, as in Linux.
	Hybrid bool
	// Partitions in number order. MBR extended partitions are listed with
	// Extended set; they are containers, not volumes.
	Partitions []Partition
	// Warnings are damage or oddities that did not stop reading: a primary
	// GPT replaced by its backup, partitions truncated at the end of the
	// disk or skipped, overlaps, a looping EBR chain.
	Warnings []string
}

// Partition is one entry of a table.
type Partition struct {
	Number int   // as Linux numbers it: /dev/vda<Number>
	Start  int64 // byte offset from the start of the disk
	Size   int64 // bytes
	// Type is "0x83" for MBR, the lowercase type GUID for GPT.
	Type     string
	TypeName string // "Linux filesystem", "EFI System", ...; "" if unknown
	// UUID is the GPT unique partition GUID, or for MBR the
	// "<disk signature>-<number>" form Linux uses as PARTUUID.
	UUID       string
	Name       string // GPT partition name
	Attributes uint64 // GPT attribute bits
	Bootable   bool   // MBR boot indicator 0x80 (GPT: legacy BIOS bootable bit 2)
	Logical    bool   // MBR logical partition (number >= 5)
	Extended   bool   // MBR extended partition: a container of logical ones
}

// Options tell Read what it cannot find out itself.
type Options struct {
	// Name of the disk, used in errors.
	Name string
	// SectorSize is the disk's logical sector size when the image records
	// one. GPT detects 512 and 4096 itself; MBR offsets assume 512 when
	// this is 0.
	SectorSize int
}

// Read reads the partition table of a disk of size bytes. It returns
// ErrNoTable when there is none, and a *fsys.CorruptError naming the
// structure and offset when a table is there but unusable (a protective MBR
// whose GPT headers are both invalid). Partial damage (a broken EBR chain, a
// primary GPT repaired from its backup) gives a table and Warnings.
func Read(r io.ReaderAt, size int64, opts Options) (*Table, error) {
	if opts.SectorSize != 0 && opts.SectorSize != 512 && opts.SectorSize != 4096 {
		return nil, fmt.Errorf("%s: logical sector size %d not supported (512 or 4096)", opts.Name, opts.SectorSize)
	}
	if size < mbrSize {
		return nil, ErrNoTable
	}
	s0 := make([]byte, mbrSize)
	if err := readFull(r, s0, 0); err != nil {
		return nil, fmt.Errorf("%s: reading sector 0: %w", opts.Name, err)
	}
	m := decodeMBR(s0)
	hasSig := m.Signature == 0xAA55
	protective, others := false, false
	for _, e := range m.Entries {
		switch {
		case e.OSType == 0xEE:
			protective = true
		case e.OSType != 0 || e.SizeInLBA != 0:
			others = true
		}
	}
	switch {
	case hasSig && protective:
		// A protective or hybrid MBR: the GPT is the table, as in Linux
		// (efi.c is_pmbr_valid; msdos.c ignores a disk with an 0xEE entry).
		t, err := readGPT(r, size, opts)
		if err != nil {
			if errors.Is(err, ErrNoTable) {
				err = corrupt(opts.Name, "GPT", 512, "the MBR has a protective 0xEE entry but there is no GPT header at LBA 1 or at the last LBA")
			}
			return nil, err
		}
		t.Hybrid = others
		return t, nil
	case !hasSig:
		// No MBR at all: a disk whose sector 0 was wiped may still carry
		// an intact GPT, which we read rather than lose the disk (Linux
		// needs the "gpt" boot parameter for this).
		t, err := readGPT(r, size, opts)
		if err != nil {
			return nil, err
		}
		t.Warnings = append(t.Warnings, "sector 0 has no MBR signature (no protective MBR); using the GPT")
		return t, nil
	}
	if isFSBootSector(s0) {
		// libblkid (partitions/dos.c) does the same: a FAT, exFAT or NTFS
		// boot sector carries 0x55AA too but is not a partition table.
		return nil, ErrNoTable
	}
	for _, e := range m.Entries {
		if e.BootIndicator != 0 && e.BootIndicator != 0x80 {
			// msdos.c: "Reject this in case the boot indicator is not 0
			// or 0x80": random bytes, not a table.
			return nil, ErrNoTable
		}
	}
	t := readMBR(r, size, m, opts)
	if len(t.Partitions) == 0 {
		// An empty MBR next to a valid GPT is a damaged protective MBR
		// rather than an empty disk.
		if g, err := readGPT(r, size, opts); err == nil {
			g.Warnings = append(g.Warnings, "the MBR has no partitions and no protective entry; using the GPT found at LBA 1")
			return g, nil
		}
	}
	return t, nil
}

// checkLayout adds warnings for partitions that overlap; the extended
// container overlaps its logical partitions by design and is left out.
func (t *Table) checkLayout() {
	var ps []Partition
	for _, p := range t.Partitions {
		if !p.Extended && p.Size > 0 {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b Partition) int {
		if a.Start != b.Start {
			return compare(a.Start, b.Start)
		}
		return a.Number - b.Number
	})
	for i := 1; i < len(ps); i++ {
		// Compare with the furthest-reaching earlier partition, so three
		// stacked partitions are all reported.
		for j := i - 1; j >= 0; j-- {
			if ps[j].Start+ps[j].Size > ps[i].Start {
				t.Warnings = append(t.Warnings, fmt.Sprintf("partitions %d and %d overlap", ps[j].Number, ps[i].Number))
				break
			}
		}
	}
}

func compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func corrupt(disk, what string, off int64, format string, args ...any) error {
	fs := what
	if disk != "" {
		fs = disk + ": " + what
	}
	return &fsys.CorruptError{FS: fs, Off: off, Msg: fmt.Sprintf(format, args...)}
}

// readFull reads len(b) bytes at off; a short read is an error.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
