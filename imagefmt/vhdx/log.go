package vhdx

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Bounds on log replay: the log region, and the data it may put in memory.
const (
	maxLogLength   = 1 << 30
	maxReplayBytes = 64 << 20
)

// logEntry is a valid log entry: its header and where it sits in the log.
type logEntry struct {
	hdr LogEntryHeader
	off int64 // offset in the log region
	raw []byte
}

// replayLog is called when the current header names a log (section 2.3):
// the image was not closed cleanly and the log holds writes that may not
// have reached their place. It finds the active sequence (2.3.3) and
// applies it to an in-memory overlay of the file, which is never written.
func (img *Image) replayLog() error {
	h := img.hdr
	at := int64(Header1Offset + 68) // where LogLength/LogOffset sit, for errors
	if h.LogVersion != 0 {
		return img.unsupported(at-4, h.LogVersion, "unsupported log version")
	}
	logOff, logLen := int64(h.LogOffset), int64(h.LogLength)
	if h.LogOffset%MiB != 0 || h.LogOffset < MiB || logLen == 0 || logLen%MiB != 0 || logLen > maxLogLength ||
		h.LogOffset > uint64(img.raw.Size()) || img.raw.Size()-logOff < logLen {
		return img.errAt(at, h.LogOffset, "log (%d bytes) misplaced or outside the file", logLen)
	}
	log := make([]byte, logLen)
	if _, err := img.raw.ReadAt(log, logOff); err != nil {
		return fmt.Errorf("%s: reading log: %w", img.name, err)
	}
	seq := img.activeSequence(log)
	if len(seq) == 0 {
		// No valid sequence: nothing was logged that must be replayed
		// (section 2.3.3: the log is then empty).
		img.info.Warnings = append(img.info.Warnings, "the header names a log but it holds no valid entries; nothing replayed")
		return nil
	}
	ov := newOverlay(img.raw)
	head := seq[len(seq)-1].hdr
	if int64(head.FlushedFileOffset) > img.raw.Size() {
		return img.errAt(logOff+seq[len(seq)-1].off+48, head.FlushedFileOffset, "the log says the file was at least %d bytes; it is truncated", head.FlushedFileOffset)
	}
	for _, e := range seq {
		if err := img.applyEntry(ov, e, logOff); err != nil {
			return err
		}
	}
	ov.size = max(ov.size, int64(head.LastFileOffset))
	img.f = ov
	img.info.Warnings = append(img.info.Warnings, fmt.Sprintf("replayed %d log entries in memory (the image was not closed cleanly)", len(seq)))
	return nil
}

// entryAt returns the valid entry at offset off of the log, if any.
func (img *Image) entryAt(log []byte, off int64) (logEntry, bool) {
	if off+LogSectorSize > int64(len(log)) {
		return logEntry{}, false
	}
	hdr := DecodeLogEntryHeader(log[off:])
	n := int64(hdr.EntryLength)
	if string(hdr.Signature[:]) != LogEntrySignature || hdr.LogGUID != img.hdr.LogGUID ||
		n < LogSectorSize || n%LogSectorSize != 0 || n > int64(len(log))-off ||
		int64(hdr.Tail)%LogSectorSize != 0 || int64(hdr.Tail) >= int64(len(log)) {
		return logEntry{}, false
	}
	descBytes := (LogEntryHeaderSize + int64(hdr.DescriptorCount)*LogDescriptorSize + LogSectorSize - 1) / LogSectorSize * LogSectorSize
	if descBytes > n {
		return logEntry{}, false
	}
	raw := log[off : off+n]
	if Checksum(raw, 4) != hdr.Checksum {
		return logEntry{}, false
	}
	return logEntry{hdr: hdr, off: off, raw: raw}, true
}

// activeSequence finds the sequence of entries to replay: consecutive valid
// entries with consecutive sequence numbers whose last (head) entry's tail
// is the first entry; of those, the one with the highest sequence number
// (section 2.3.3). Entries do not wrap around the end of the log in files
// qemu and Hyper-V write after a clean start, but a sequence may continue at
// offset 0.
func (img *Image) activeSequence(log []byte) []logEntry {
	var best []logEntry
	for start := int64(0); start < int64(len(log)); start += LogSectorSize {
		first, ok := img.entryAt(log, start)
		if !ok {
			continue
		}
		seq := []logEntry{first}
		next := (start + int64(first.hdr.EntryLength)) % int64(len(log))
		for len(seq) < len(log)/LogSectorSize {
			e, ok := img.entryAt(log, next)
			if !ok || e.hdr.SequenceNumber != seq[len(seq)-1].hdr.SequenceNumber+1 {
				break
			}
			seq = append(seq, e)
			next = (next + int64(e.hdr.EntryLength)) % int64(len(log))
		}
		head := seq[len(seq)-1].hdr
		if int64(head.Tail) != start {
			continue
		}
		if best == nil || head.SequenceNumber > best[len(best)-1].hdr.SequenceNumber {
			best = seq
		}
	}
	return best
}

// applyEntry applies the descriptors of one entry (sections 2.3.1.2 to
// 2.3.1.4).
func (img *Image) applyEntry(ov *overlay, e logEntry, logOff int64) error {
	le := binary.LittleEndian
	data := (LogEntryHeaderSize + int64(e.hdr.DescriptorCount)*LogDescriptorSize + LogSectorSize - 1) / LogSectorSize * LogSectorSize
	for i := int64(0); i < int64(e.hdr.DescriptorCount); i++ {
		at := logOff + e.off + LogEntryHeaderSize + i*LogDescriptorSize
		d := DecodeLogDescriptor(e.raw[LogEntryHeaderSize+i*LogDescriptorSize:])
		if d.SequenceNumber != e.hdr.SequenceNumber || d.FileOffset%LogSectorSize != 0 || d.FileOffset > 1<<62 {
			return img.errAt(at, d.FileOffset, "bad log descriptor")
		}
		switch string(d.Signature[:]) {
		case ZeroDescSignature:
			n := d.LeadingBytes // ZeroLength
			if n%LogSectorSize != 0 || n > 1<<40 {
				return img.errAt(at, n, "bad zero length in log descriptor")
			}
			ov.zero(int64(d.FileOffset), int64(n))
		case DataDescSignature:
			if data+LogSectorSize > int64(len(e.raw)) {
				return img.errAt(at, nil, "log entry has fewer data sectors than descriptors")
			}
			sec := e.raw[data : data+LogSectorSize]
			data += LogSectorSize
			if string(sec[0:4]) != DataSecSignature || le.Uint32(sec[4:]) != uint32(d.SequenceNumber>>32) ||
				le.Uint32(sec[LogSectorSize-4:]) != uint32(d.SequenceNumber) {
				return img.errAt(at, nil, "log data sector does not match its descriptor")
			}
			page := make([]byte, LogSectorSize)
			le.PutUint64(page, d.LeadingBytes)
			copy(page[8:], sec[8:LogSectorSize-4])
			le.PutUint32(page[LogSectorSize-4:], d.TrailingBytes)
			if err := ov.write(int64(d.FileOffset), page); err != nil {
				return img.unsupported(at, nil, "%v", err)
			}
		default:
			return img.errAt(at, nil, "unknown log descriptor %q", d.Signature[:])
		}
	}
	return nil
}

// overlay is the file as the replayed log leaves it: 4 KiB pages written by
// data descriptors, ranges zeroed by zero descriptors, the file elsewhere.
// Closing it does nothing: the Image closes the file.
type overlay struct {
	vdisk.File
	size  int64
	pages map[int64][]byte // by page index
	zeros [][2]int64       // [start, end), in application order
	bytes int64
}

func newOverlay(f vdisk.File) *overlay {
	return &overlay{File: f, size: f.Size(), pages: map[int64][]byte{}}
}

func (o *overlay) write(off int64, page []byte) error {
	if o.bytes += LogSectorSize; o.bytes > maxReplayBytes {
		return fmt.Errorf("the log replays more than %d MiB", maxReplayBytes>>20)
	}
	o.pages[off/LogSectorSize] = page
	o.size = max(o.size, off+LogSectorSize)
	return nil
}

func (o *overlay) zero(off, n int64) {
	for p := range o.pages {
		if p*LogSectorSize >= off && p*LogSectorSize < off+n {
			delete(o.pages, p)
		}
	}
	o.zeros = append(o.zeros, [2]int64{off, off + n})
	o.size = max(o.size, off+n)
}

func (o *overlay) zeroed(off int64) bool {
	for _, z := range o.zeros {
		if off >= z[0] && off < z[1] {
			return true
		}
	}
	return false
}

func (o *overlay) Size() int64  { return o.size }
func (o *overlay) Close() error { return nil }

// ReadAt reads the replayed file: pages the log touched from memory, the
// rest from the file in as few preads as possible.
func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, io.EOF
	}
	want := len(p)
	p = p[:min(int64(len(p)), o.size-off)]
	var touched []int64
	first, last := off/LogSectorSize, (off+int64(len(p))-1)/LogSectorSize
	if last-first < int64(len(o.pages)) {
		for pg := first; pg <= last; pg++ {
			if _, ok := o.pages[pg]; ok {
				touched = append(touched, pg)
			}
		}
	} else {
		for pg := range o.pages {
			if pg >= first && pg <= last {
				touched = append(touched, pg)
			}
		}
		slices.Sort(touched)
	}
	pos := int64(0)
	flush := func(end int64) error {
		// Bytes [pos, end) are not in a page: zero ranges or the file.
		for pos < end {
			a := off + pos
			if o.zeroed(a) {
				n := min(end-pos, LogSectorSize-a%LogSectorSize)
				clear(p[pos : pos+n])
				pos += n
				continue
			}
			n := end - pos
			for _, z := range o.zeros {
				if z[0] > a && z[0] < a+n {
					n = z[0] - a
				}
			}
			m, err := o.File.ReadAt(p[pos:pos+n], a)
			if err != nil && err != io.EOF {
				return err
			}
			clear(p[pos+int64(m) : pos+n]) // past the end of the file
			pos += n
		}
		return nil
	}
	for _, pg := range touched {
		start := max(pg*LogSectorSize-off, 0)
		if err := flush(start); err != nil {
			return 0, err
		}
		end := min((pg+1)*LogSectorSize-off, int64(len(p)))
		copy(p[start:end], o.pages[pg][start+off-pg*LogSectorSize:])
		pos = end
	}
	if err := flush(int64(len(p))); err != nil {
		return 0, err
	}
	if len(p) < want {
		return len(p), io.EOF
	}
	return len(p), nil
}
