package part

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
)

// maxEntryArray bounds the partition entry array a GPT header may ask us to
// read (and allocate). The UEFI minimum is 16 KiB; gdisk allows resizing it
// to a few hundred KiB. The kernel limits it to what kmalloc can give.
const maxEntryArray = 4 << 20

// gptRead is a checked GPT header with its entry array.
type gptRead struct {
	hdr     GPTHeader
	entries []byte
}

// readGPT finds a GPT with 512-byte or 4 KiB logical sectors, whichever has
// a header signature at LBA 1 (or, failing that, at the last LBA), and reads
// it. It returns ErrNoTable when no header signature is found anywhere.
func readGPT(r io.ReaderAt, size int64, opts Options) (*Table, error) {
	sizes := []int64{512, 4096}
	if opts.SectorSize == 4096 {
		sizes = []int64{4096, 512}
	}
	sig := make([]byte, len(gptSignature))
	has := func(off int64) bool {
		return off >= 0 && off+int64(len(sig)) <= size && readFull(r, sig, off) == nil && string(sig) == gptSignature
	}
	var firstErr error
	for _, ss := range sizes {
		if !has(ss) && !(size >= 2*ss && has((size/ss-1)*ss)) {
			continue
		}
		t, err := readGPTSized(r, size, ss, opts.Name)
		if err == nil {
			return t, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, ErrNoTable
}

// readGPTSized reads the GPT of a disk with logical sectors of ss bytes: the
// primary header at LBA 1, or the backup at the last LBA when the primary is
// damaged.
func readGPTSized(r io.ReaderAt, size, ss int64, name string) (*Table, error) {
	lastLBA := uint64(size/ss) - 1
	var warnings []string
	g, perr := readGPTHeader(r, size, ss, 1, name)
	if perr == nil {
		// Check the backup too, so a damaged one is reported while it
		// can still be repaired from the primary (kernel compare_gpts).
		alt := g.hdr.AlternateLBA
		if alt != lastLBA {
			warnings = append(warnings, fmt.Sprintf("GPT backup header is at LBA %d, not at the last LBA %d (was the disk resized?)", alt, lastLBA))
		}
		if alt <= lastLBA {
			if _, berr := readGPTHeader(r, size, ss, alt, name); berr != nil {
				warnings = append(warnings, fmt.Sprintf("GPT backup header invalid: %v", berr))
			}
		}
	} else {
		var berr error
		g, berr = readGPTHeader(r, size, ss, lastLBA, name)
		if berr != nil {
			return nil, fmt.Errorf("%w; backup: %v", perr, berr)
		}
		warnings = append(warnings, fmt.Sprintf("primary GPT invalid (%v); using the backup at LBA %d", perr, lastLBA))
	}
	t := &Table{Scheme: "gpt", SectorSize: int(ss), DiskID: FormatGUID(g.hdr.DiskGUID), Warnings: warnings}
	esz := int(g.hdr.SizeOfPartitionEntry)
	n := len(g.entries) / esz
	for i := 0; i < n; i++ {
		e := decodeGPTEntry(g.entries[i*esz:])
		if isZero(e.PartitionTypeGUID[:]) {
			continue
		}
		num := i + 1
		if num > MaxPartitions {
			t.Warnings = append(t.Warnings, fmt.Sprintf("GPT entries past %d are used but ignored, as Linux ignores them", MaxPartitions))
			break
		}
		// efi.c is_pte_valid: an entry reaching past the disk is skipped.
		if e.StartingLBA > lastLBA || e.EndingLBA > lastLBA {
			t.Warnings = append(t.Warnings, fmt.Sprintf("partition %d (LBA %d-%d) lies past the end of the disk (last LBA %d); skipped", num, e.StartingLBA, e.EndingLBA, lastLBA))
			continue
		}
		if e.EndingLBA < e.StartingLBA {
			t.Warnings = append(t.Warnings, fmt.Sprintf("partition %d ends (LBA %d) before it starts (LBA %d); skipped", num, e.EndingLBA, e.StartingLBA))
			continue
		}
		typ := FormatGUID(e.PartitionTypeGUID)
		t.Partitions = append(t.Partitions, Partition{
			Number:     num,
			Start:      int64(e.StartingLBA) * ss,
			Size:       int64(e.EndingLBA-e.StartingLBA+1) * ss,
			Type:       typ,
			TypeName:   gptTypeName(typ),
			UUID:       FormatGUID(e.UniquePartitionGUID),
			Name:       e.Name(),
			Attributes: e.Attributes,
			Bootable:   e.Attributes&(1<<2) != 0, // LegacyBIOSBootable
		})
	}
	t.checkLayout()
	return t, nil
}

// readGPTHeader reads and checks the header at lba and its entry array, with
// the checks of the kernel's efi.c is_gpt_valid and UEFI 2.10 section 5.3.2.
func readGPTHeader(r io.ReaderAt, size, ss int64, lba uint64, name string) (*gptRead, error) {
	lastLBA := uint64(size/ss) - 1
	what := "primary GPT header"
	if lba != 1 {
		what = "backup GPT header"
	}
	if lba > lastLBA {
		return nil, corrupt(name, what, -1, "LBA %d is past the end of the disk", lba)
	}
	off := int64(lba) * ss
	b := make([]byte, ss)
	if err := readFull(r, b, off); err != nil {
		return nil, fmt.Errorf("%s: %s at byte %d: %w", name, what, off, err)
	}
	h := decodeGPTHeader(b)
	bad := func(format string, args ...any) error { return corrupt(name, what, off, format, args...) }
	if !bytes.Equal(h.Signature[:], []byte(gptSignature)) {
		return nil, bad("no EFI PART signature")
	}
	if h.HeaderSize < gptHeaderSize || int64(h.HeaderSize) > ss {
		return nil, bad("header size %d outside %d..%d", h.HeaderSize, gptHeaderSize, ss)
	}
	if got := headerCRC(b[:h.HeaderSize]); got != h.HeaderCRC32 {
		return nil, bad("header CRC32 is %#08x, header says %#08x", got, h.HeaderCRC32)
	}
	if h.MyLBA != lba {
		return nil, bad("header says it is at LBA %d", h.MyLBA)
	}
	if h.FirstUsableLBA > lastLBA || h.LastUsableLBA > lastLBA || h.LastUsableLBA < h.FirstUsableLBA {
		return nil, bad("usable LBAs %d-%d do not fit a disk whose last LBA is %d", h.FirstUsableLBA, h.LastUsableLBA, lastLBA)
	}
	esz := h.SizeOfPartitionEntry
	if esz < gptEntrySize || esz%gptEntrySize != 0 || esz&(esz-1) != 0 {
		return nil, bad("partition entry size %d is not 128*2^n", esz)
	}
	total := uint64(h.NumberOfPartitionEntries) * uint64(esz) // no overflow: both < 2^32
	if total > maxEntryArray {
		return nil, bad("partition entry array of %d entries of %d bytes is larger than %d bytes", h.NumberOfPartitionEntries, esz, maxEntryArray)
	}
	if h.PartitionEntryLBA > lastLBA || total > (lastLBA+1-h.PartitionEntryLBA)*uint64(ss) {
		return nil, bad("partition entry array (%d bytes at LBA %d) runs past the end of the disk", total, h.PartitionEntryLBA)
	}
	entries := make([]byte, total)
	eoff := int64(h.PartitionEntryLBA) * ss
	if err := readFull(r, entries, eoff); err != nil {
		return nil, fmt.Errorf("%s: %s: reading partition entries at byte %d: %w", name, what, eoff, err)
	}
	if got := crc32.ChecksumIEEE(entries); got != h.PartitionEntryArrayCRC32 {
		return nil, corrupt(name, what, eoff, "partition entry array CRC32 is %#08x, header says %#08x", got, h.PartitionEntryArrayCRC32)
	}
	return &gptRead{hdr: h, entries: entries}, nil
}

// headerCRC is the CRC32 of a header with its HeaderCRC32 field taken as zero.
func headerCRC(b []byte) uint32 {
	c := crc32.Update(0, crc32.IEEETable, b[:16])
	c = crc32.Update(c, crc32.IEEETable, []byte{0, 0, 0, 0})
	return crc32.Update(c, crc32.IEEETable, b[20:])
}
