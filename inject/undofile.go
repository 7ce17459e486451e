package inject

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"
)

// The undo file (format version 1) is a stream of frames after a 16-byte
// magic. Each frame is a type byte, three zero bytes, a little-endian
// 64-bit payload length, the payload, and the CRC-32C of everything before
// it in the frame. A reader stops at the first frame that is short or
// fails its CRC: that is where a crash interrupted the writer, and records
// are always on stable storage before the bytes they save are overwritten,
// so what precedes is complete.
//
// Frames: one header (JSON), then records (binary: the old bytes of one
// range and the SHA-256 of the old and new bytes), then a commit frame
// (JSON) once every write is on stable storage, and an undone frame
// (JSON) when --undo restored the image.
const undoMagic = "VMMOUNT-UNDO\x00\x01\r\n"

const (
	frameHeader = 1
	frameRecord = 2
	frameCommit = 3
	frameUndone = 4
)

// maxFrame bounds one frame (records are at most recordChunk bytes of
// data).
const maxFrame = 64 << 20

// recordChunk is the largest range one record saves.
const recordChunk = 1 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Record spaces: what an offset is relative to.
const (
	// spaceGuest is the guest's view of the disk (the raw image file, or
	// a qcow2 image's virtual disk).
	spaceGuest = 0
	// spaceHost is the qcow2 image file itself.
	spaceHost = 1
)

// undoHeader is the first frame: which image, how it was written, where
// the filesystem is.
type undoHeader struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	Tool    string    `json:"tool"`
	// Domain and URI are set when the target was a libvirt domain.
	Domain string  `json:"domain,omitempty"`
	URI    string  `json:"uri,omitempty"`
	Image  ImageID `json:"image"`
	// Volume is the filesystem written: its path in the namespace, byte
	// offset and size in the disk.
	Volume      string `json:"volume"`
	VolumeOff   int64  `json:"volume_offset"`
	VolumeSize  int64  `json:"volume_size"`
	FSType      string `json:"fs"`
	Description string `json:"description,omitempty"`
}

// ImageID identifies the image file an undo file belongs to.
type ImageID struct {
	Path        string `json:"path"`
	Format      string `json:"format"` // raw or qcow2
	FileSize    int64  `json:"file_size"`
	VirtualSize int64  `json:"virtual_size"`
	Dev         uint64 `json:"dev"`
	Ino         uint64 `json:"ino"`
}

// undoCommit is written once every change is on stable storage.
type undoCommit struct {
	Time     time.Time `json:"time"`
	FileSize int64     `json:"file_size"` // the image file's length after
	// After is the hex SHA-256 of a record's range after the writes, by
	// record index, for records whose new bytes were not known when they
	// were saved (a qcow2 image's host ranges and content).
	After map[int]string `json:"after,omitempty"`
}

type undoUndone struct {
	Time time.Time `json:"time"`
}

// record is one saved range.
type record struct {
	Space   uint8
	Off     int64
	Len     int64
	OldSum  [32]byte
	NewSum  [32]byte // zero when not known when written
	HasData bool     // the old bytes are saved (in the file, or Zero)
	Zero    bool     // the old bytes were all zeros (not stored)
	dataOff int64    // where the old bytes are in the undo file
}

const recordHeaderLen = 1 + 1 + 2 + 4 + 8 + 8 + 32 + 32

func (r *record) knownNew() bool { return r.NewSum != [32]byte{} }

// undoWriter appends frames to an undo file.
type undoWriter struct {
	f    *os.File
	w    *bufio.Writer
	off  int64
	recs int
}

// createUndo creates the undo file (it must not exist) and writes the
// magic and the header.
func createUndo(path string, h *undoHeader) (*undoWriter, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating the undo file: %w", err)
	}
	u := &undoWriter{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	if _, err := u.w.WriteString(undoMagic); err != nil {
		u.abort()
		return nil, err
	}
	u.off = int64(len(undoMagic))
	b, _ := json.Marshal(h)
	if err := u.frame(frameHeader, b); err != nil {
		u.abort()
		return nil, err
	}
	return u, nil
}

func (u *undoWriter) frame(typ byte, parts ...[]byte) error {
	var n int
	for _, p := range parts {
		n += len(p)
	}
	var hdr [12]byte
	hdr[0] = typ
	binary.LittleEndian.PutUint64(hdr[4:], uint64(n))
	c := crc32.Update(0, crcTable, hdr[:])
	if _, err := u.w.Write(hdr[:]); err != nil {
		return u.werr(err)
	}
	for _, p := range parts {
		c = crc32.Update(c, crcTable, p)
		if _, err := u.w.Write(p); err != nil {
			return u.werr(err)
		}
	}
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], c)
	if _, err := u.w.Write(tail[:]); err != nil {
		return u.werr(err)
	}
	u.off += int64(12 + n + 4)
	return nil
}

func (u *undoWriter) werr(err error) error {
	return fmt.Errorf("writing the undo file %s: %w", u.f.Name(), err)
}

// Record flags (byte 1 of a record).
const (
	recHashes = 0 // hashes only
	recData   = 1 // the old bytes follow
	recZeros  = 2 // the old bytes were zeros; nothing follows
)

// add appends a record; old are the bytes it saves (nil for a record of
// hashes only). All-zero old bytes (free blocks of a fresh filesystem) are
// recorded as such, not stored.
func (u *undoWriter) add(space uint8, off int64, old []byte, oldSum, newSum [32]byte, n int64) error {
	var h [recordHeaderLen]byte
	h[0] = space
	if old != nil {
		h[1] = recData
		if allZero(old) {
			h[1], old = recZeros, nil
		}
	}
	binary.LittleEndian.PutUint64(h[8:], uint64(off))
	binary.LittleEndian.PutUint64(h[16:], uint64(n))
	copy(h[24:], oldSum[:])
	copy(h[56:], newSum[:])
	u.recs++
	return u.frame(frameRecord, h[:], old)
}

// sync makes everything written so far durable.
func (u *undoWriter) sync() error {
	if err := u.w.Flush(); err != nil {
		return u.werr(err)
	}
	if err := u.f.Sync(); err != nil {
		return u.werr(err)
	}
	return nil
}

func (u *undoWriter) commit(c *undoCommit) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := u.frame(frameCommit, b); err != nil {
		return err
	}
	return u.sync()
}

func (u *undoWriter) close() error {
	err := u.w.Flush()
	if cerr := u.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// abort removes an undo file that saved nothing yet.
func (u *undoWriter) abort() {
	u.f.Close()
	os.Remove(u.f.Name())
}

// undoFile is a parsed undo file; record data stays on disk.
type undoFile struct {
	path    string
	header  undoHeader
	records []*record
	commit  *undoCommit
	undone  *undoUndone
	// torn says the file ends in a partial frame (an interrupted write).
	torn bool
	end  int64 // offset after the last good frame
}

// ErrUndoFile means an undo file is not one, or is damaged before its
// header ends.
var ErrUndoFile = errors.New("not a valid undo file")

// readUndo parses an undo file's frames.
func readUndo(path string) (*undoFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	r := bufio.NewReaderSize(f, 64<<10)
	magic := make([]byte, len(undoMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != undoMagic {
		return nil, fmt.Errorf("%s: %w (no undo magic)", path, ErrUndoFile)
	}
	u := &undoFile{path: path}
	off := int64(len(undoMagic))
	for {
		var hdr [12]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			u.torn = err != io.EOF
			break
		}
		typ := hdr[0]
		n := binary.LittleEndian.Uint64(hdr[4:])
		if n > maxFrame || int64(n) > size-off-16 {
			u.torn = true
			break
		}
		payload := make([]byte, n)
		var tail [4]byte
		if _, err := io.ReadFull(r, payload); err != nil {
			u.torn = true
			break
		}
		if _, err := io.ReadFull(r, tail[:]); err != nil {
			u.torn = true
			break
		}
		c := crc32.Update(0, crcTable, hdr[:])
		c = crc32.Update(c, crcTable, payload)
		if c != binary.LittleEndian.Uint32(tail[:]) {
			u.torn = true
			break
		}
		if err := u.parseFrame(typ, payload, off+12); err != nil {
			return nil, fmt.Errorf("%s: frame at %d: %w", path, off, err)
		}
		off += int64(12 + n + 4)
	}
	u.end = off
	if u.header.Version == 0 {
		return nil, fmt.Errorf("%s: %w (no header)", path, ErrUndoFile)
	}
	return u, nil
}

func (u *undoFile) parseFrame(typ byte, p []byte, payloadOff int64) error {
	switch typ {
	case frameHeader:
		if u.header.Version != 0 {
			return fmt.Errorf("%w: a second header", ErrUndoFile)
		}
		if err := json.Unmarshal(p, &u.header); err != nil {
			return fmt.Errorf("%w: header: %v", ErrUndoFile, err)
		}
		if u.header.Version != 1 {
			return fmt.Errorf("%w: version %d", ErrUndoFile, u.header.Version)
		}
	case frameRecord:
		if u.header.Version == 0 || len(p) < recordHeaderLen {
			return fmt.Errorf("%w: record before the header or short", ErrUndoFile)
		}
		rec := &record{Space: p[0], HasData: p[1] == recData || p[1] == recZeros, Zero: p[1] == recZeros,
			Off: int64(binary.LittleEndian.Uint64(p[8:])), Len: int64(binary.LittleEndian.Uint64(p[16:]))}
		copy(rec.OldSum[:], p[24:56])
		copy(rec.NewSum[:], p[56:88])
		stored := rec.HasData && !rec.Zero
		if rec.Off < 0 || rec.Len <= 0 || rec.Len > recordChunk || rec.Space > spaceHost || p[1] > recZeros ||
			(stored && int64(len(p)-recordHeaderLen) != rec.Len) || (!stored && len(p) != recordHeaderLen) {
			return fmt.Errorf("%w: bad record", ErrUndoFile)
		}
		if rec.Zero && sha256.Sum256(make([]byte, rec.Len)) != rec.OldSum {
			return fmt.Errorf("%w: record %d: zeros do not match their checksum", ErrUndoFile, len(u.records))
		}
		if stored {
			if sha256.Sum256(p[recordHeaderLen:]) != rec.OldSum {
				return fmt.Errorf("%w: record %d: saved bytes do not match their checksum", ErrUndoFile, len(u.records))
			}
			rec.dataOff = payloadOff + recordHeaderLen
		}
		u.records = append(u.records, rec)
	case frameCommit:
		c := new(undoCommit)
		if err := json.Unmarshal(p, c); err != nil {
			return fmt.Errorf("%w: commit: %v", ErrUndoFile, err)
		}
		u.commit = c
	case frameUndone:
		d := new(undoUndone)
		if err := json.Unmarshal(p, d); err != nil {
			return fmt.Errorf("%w: undone: %v", ErrUndoFile, err)
		}
		u.undone = d
	default:
		return fmt.Errorf("%w: frame type %d", ErrUndoFile, typ)
	}
	return nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// oldBytes reads a record's saved bytes from the undo file.
func (u *undoFile) oldBytes(f *os.File, rec *record) ([]byte, error) {
	if !rec.HasData {
		return nil, fmt.Errorf("record at %d has no saved bytes", rec.Off)
	}
	b := make([]byte, rec.Len)
	if rec.Zero {
		return b, nil
	}
	if _, err := f.ReadAt(b, rec.dataOff); err != nil {
		return nil, fmt.Errorf("reading the undo file: %w", err)
	}
	if sha256.Sum256(b) != rec.OldSum {
		return nil, fmt.Errorf("%s: saved bytes of the range at %d changed since they were written: %w", u.path, rec.Off, ErrUndoFile)
	}
	return b, nil
}

// appendUndone marks the undo file as applied.
func appendUndone(path string, end int64, t time.Time) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// Drop a torn tail first, so the new frame is readable.
	if err := f.Truncate(end); err != nil {
		return err
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		return err
	}
	u := &undoWriter{f: f, w: bufio.NewWriter(f), off: end}
	b, _ := json.Marshal(undoUndone{Time: t})
	if err := u.frame(frameUndone, b); err != nil {
		return err
	}
	return u.sync()
}
