package jbd2

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// Block says where the replayed content of a volume block is.
type Block struct {
	Log     uint64 // block number inside the journal
	Escaped bool   // restore the jbd2 magic in the first four bytes
}

// Result is what a recovery would write.
type Result struct {
	// Blocks maps volume block numbers to their newest committed copy.
	Blocks map[uint64]Block
	// Transactions is the number of committed transactions replayed.
	Transactions int
	// Warnings note skipped blocks and where the log ended early.
	Warnings []string
}

// Error is a damaged or unsupported journal; Block is the journal block.
type Error struct {
	Block uint64
	Msg   string
	Err   error // fsys.ErrCorrupt or fsys.ErrUnsupported
}

func (e *Error) Error() string { return fmt.Sprintf("journal block %d: %s", e.Block, e.Msg) }
func (e *Error) Unwrap() error { return e.Err }

func corrupt(blk uint64, format string, args ...any) error {
	return &Error{Block: blk, Msg: fmt.Sprintf(format, args...), Err: fsys.ErrCorrupt}
}

type journal struct {
	r        io.ReaderAt
	bs       int
	sb       *Superblock
	first    uint32 // log area is [first, last)
	last     uint32
	incompat uint32
	csum     bool // checksum v2 or v3
	v3       bool
	is64     bool
	seed     uint32
	tagSize  int
	res      *Result
}

// tag is one logged block of a transaction.
type tag struct {
	fs      uint64
	log     uint32
	escaped bool
	csum    uint32
}

type txn struct {
	seq     uint32
	tags    []tag
	revokes []uint64
}

// Replay reads the journal held in r (size bytes, blockSize-byte blocks:
// the journal inode's content) and returns what recovery would write.
// A clean journal gives an empty Result.
func Replay(r io.ReaderAt, size int64, blockSize int) (*Result, error) {
	j := &journal{r: r, bs: blockSize, res: &Result{Blocks: map[uint64]Block{}}}
	if err := j.loadSuper(size); err != nil {
		return nil, err
	}
	if j.sb.Start == 0 {
		return j.res, nil // clean
	}
	txns, end, err := j.scan()
	if err != nil {
		return nil, err
	}
	if err := j.checkFastCommit(end); err != nil {
		return nil, err
	}
	if err := j.replay(txns); err != nil {
		return nil, err
	}
	return j.res, nil
}

func (j *journal) loadSuper(size int64) error {
	if j.bs < 1024 || j.bs > 65536 || size < int64(j.bs) {
		return corrupt(0, "journal of %d bytes with %d-byte blocks", size, j.bs)
	}
	buf := make([]byte, j.bs)
	if err := j.read(0, buf); err != nil {
		return err
	}
	h := DecodeHeader(buf)
	if h.Magic != Magic || h.BlockType != BlockSuperV1 && h.BlockType != BlockSuperV2 {
		return corrupt(0, "no journal superblock (magic %#x, type %d)", h.Magic, h.BlockType)
	}
	sb, _ := DecodeSuperblock(buf)
	j.sb = sb
	if sb.BlockSize != uint32(j.bs) {
		return corrupt(0, "journal block size %d differs from the filesystem's %d", sb.BlockSize, j.bs)
	}
	if h.BlockType == BlockSuperV1 {
		sb.FeatureCompat, sb.FeatureIncompat, sb.FeatureRoCompat = 0, 0, 0
	}
	const known = IncompatRevoke | Incompat64bit | IncompatAsyncCommit | IncompatCsumV2 | IncompatCsumV3 | IncompatFastCommit
	if u := sb.FeatureIncompat &^ known; u != 0 {
		return &Error{Block: 0, Msg: fmt.Sprintf("unknown journal features %#x", u), Err: fsys.ErrUnsupported}
	}
	j.incompat = sb.FeatureIncompat
	j.v3 = j.incompat&IncompatCsumV3 != 0
	j.csum = j.v3 || j.incompat&IncompatCsumV2 != 0
	j.is64 = j.incompat&Incompat64bit != 0
	j.tagSize = tagBytes(j.incompat)
	if j.csum {
		if sb.ChecksumType != CrcChecksumCrc32c {
			return corrupt(0, "journal checksum type %d", sb.ChecksumType)
		}
		if c := superChecksum(buf); c != sb.Checksum {
			return corrupt(0, "journal superblock checksum mismatch (stored %#x, computed %#x)", sb.Checksum, c)
		}
		j.seed = crc32c(^uint32(0), sb.UUID[:])
	}
	if uint64(sb.MaxLen) > uint64(size)/uint64(j.bs) {
		return corrupt(0, "journal length %d blocks exceeds its inode (%d bytes)", sb.MaxLen, size)
	}
	j.first, j.last = sb.First, sb.MaxLen
	if j.incompat&IncompatFastCommit != 0 {
		fc := sb.NumFcBlocks
		if fc == 0 {
			fc = DefaultFastCommitBlocks
		}
		if fc >= j.last {
			return corrupt(0, "fast commit area of %d blocks in a %d-block journal", fc, j.last)
		}
		j.last -= fc
	}
	if j.first == 0 || j.first >= j.last {
		return corrupt(0, "bad log area [%d, %d)", j.first, j.last)
	}
	if sb.Start != 0 && (sb.Start < j.first || sb.Start >= j.last) {
		return corrupt(0, "log start %d outside [%d, %d)", sb.Start, j.first, j.last)
	}
	return nil
}

func (j *journal) read(blk uint32, buf []byte) error {
	n, err := j.r.ReadAt(buf, int64(blk)*int64(j.bs))
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return corrupt(uint64(blk), "read: %v", err)
}

func (j *journal) next(b uint32) uint32 {
	b++
	if b >= j.last {
		b = j.first
	}
	return b
}

func (j *journal) warn(format string, args ...any) {
	if len(j.res.Warnings) < 20 {
		j.res.Warnings = append(j.res.Warnings, fmt.Sprintf(format, args...))
	}
}

// scan walks the log from s_start and returns the committed transactions
// and the sequence number after the last one.
func (j *journal) scan() ([]txn, uint32, error) {
	buf := make([]byte, j.bs)
	pos, seq := j.sb.Start, j.sb.Sequence
	var done []txn
	cur := txn{seq: seq}
	tail := 0
	if j.csum {
		tail = TailSize
	}
	// Every step consumes at least one log block; a log holds at most
	// last-first blocks, so more steps than that means the sequence
	// numbers lie and the scan stops.
	for steps := uint32(0); steps < j.last-j.first; {
		if err := j.read(pos, buf); err != nil {
			return nil, 0, err
		}
		h := DecodeHeader(buf)
		if h.Magic != Magic || h.Sequence != seq {
			break
		}
		switch h.BlockType {
		case BlockDescriptor:
			if j.csum {
				if s, c := tailChecksum(j.seed, buf); s != c {
					j.warn("descriptor block %d of transaction %d fails its checksum; the log ends there", pos, seq)
					return done, seq, nil
				}
			}
			for off := HeaderSize; off+j.tagSize <= j.bs-tail; {
				t, flags := j.decodeTag(buf[off:])
				pos = j.next(pos)
				steps++
				t.log = pos
				cur.tags = append(cur.tags, t)
				off += j.tagSize
				if flags&FlagSameUUID == 0 {
					off += 16
				}
				if flags&FlagLastTag != 0 {
					break
				}
			}
		case BlockCommit:
			if j.csum {
				if s, c := commitChecksum(j.seed, buf); s != c {
					j.warn("commit block %d of transaction %d fails its checksum; the log ends there", pos, seq)
					return done, seq, nil
				}
			}
			done = append(done, cur)
			seq++
			cur = txn{seq: seq}
		case BlockRevoke:
			if j.csum {
				if s, c := tailChecksum(j.seed, buf); s != c {
					return nil, 0, corrupt(uint64(pos), "revoke block of transaction %d fails its checksum", seq)
				}
			}
			rs, err := j.revokes(buf, pos)
			if err != nil {
				return nil, 0, err
			}
			cur.revokes = append(cur.revokes, rs...)
		default:
			return done, seq, nil
		}
		pos = j.next(pos)
		steps++
	}
	return done, seq, nil
}

func (j *journal) decodeTag(b []byte) (tag, uint32) {
	var t tag
	var flags uint32
	t.fs = uint64(be.Uint32(b))
	if j.v3 {
		flags = be.Uint32(b[4:])
		t.fs |= uint64(be.Uint32(b[8:])) << 32
		t.csum = be.Uint32(b[12:])
	} else {
		t.csum = uint32(be.Uint16(b[4:]))
		flags = uint32(be.Uint16(b[6:]))
		if j.is64 {
			t.fs |= uint64(be.Uint32(b[8:])) << 32
		}
	}
	if !j.is64 {
		t.fs &= 0xFFFFFFFF
	}
	t.escaped = flags&FlagEscape != 0
	return t, flags
}

// revokes parses a revoke block: r_count bytes (header included) of 4- or
// 8-byte block numbers.
func (j *journal) revokes(b []byte, pos uint32) ([]uint64, error) {
	count := int(be.Uint32(b[HeaderSize:]))
	limit := j.bs
	if j.csum {
		limit -= TailSize
	}
	if count < RevokeHeaderSize || count > limit {
		return nil, corrupt(uint64(pos), "revoke block count %d", count)
	}
	size := 4
	if j.is64 {
		size = 8
	}
	var out []uint64
	for off := RevokeHeaderSize; off+size <= count; off += size {
		if size == 8 {
			out = append(out, be.Uint64(b[off:]))
		} else {
			out = append(out, uint64(be.Uint32(b[off:])))
		}
	}
	return out, nil
}

// tidGE compares transaction ids as jbd2 does, modulo 2^32.
func tidGE(a, b uint32) bool { return int32(a-b) >= 0 }

// replay applies revokes, then the tags of each transaction in order.
func (j *journal) replay(txns []txn) error {
	revoked := map[uint64]uint32{}
	for _, t := range txns {
		for _, b := range t.revokes {
			if s, ok := revoked[b]; !ok || tidGE(t.seq, s) {
				revoked[b] = t.seq
			}
		}
	}
	buf := make([]byte, j.bs)
	for _, t := range txns {
		for _, tg := range t.tags {
			if s, ok := revoked[tg.fs]; ok && tidGE(s, t.seq) {
				continue
			}
			if j.csum {
				if err := j.read(tg.log, buf); err != nil {
					return err
				}
				c := dataChecksum(j.seed, t.seq, buf)
				if !j.v3 {
					c &= 0xFFFF
				}
				if c != tg.csum {
					j.warn("journal block %d (volume block %d, transaction %d) fails its checksum; not replayed", tg.log, tg.fs, t.seq)
					continue
				}
			}
			j.res.Blocks[tg.fs] = Block{Log: uint64(tg.log), Escaped: tg.escaped}
		}
	}
	j.res.Transactions = len(txns)
	return nil
}

// checkFastCommit refuses a journal whose fast-commit area holds commits
// for the transaction after the last full one: replaying them needs ext4's
// own logic, which this package does not have.
func (j *journal) checkFastCommit(next uint32) error {
	if j.incompat&IncompatFastCommit == 0 {
		return nil
	}
	buf := make([]byte, j.bs)
	for _, blk := range []uint32{j.last, j.last + 1} {
		if blk >= j.sb.MaxLen {
			continue
		}
		if err := j.read(blk, buf); err != nil {
			return err
		}
		// struct ext4_fc_tl {le16 tag; le16 len} then ext4_fc_head
		// {le32 features; le32 tid}; EXT4_FC_TAG_HEAD is 9.
		le := binary.LittleEndian
		if le.Uint16(buf) == 9 && le.Uint16(buf[2:]) == 8 && tidGE(le.Uint32(buf[8:]), next) {
			return &Error{Block: uint64(blk), Msg: "pending ext4 fast commits cannot be replayed", Err: fsys.ErrUnsupported}
		}
	}
	return nil
}
