package jbd2

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// journalWriter builds small journals byte by byte, as jbd2 lays them out
// (journal.rst), for crafted-input tests and fuzz seeds.
type journalWriter struct {
	bs       int
	incompat uint32
	buf      []byte
	pos      uint32 // next log block
	seed     uint32
}

const testBS = 1024

func newJournal(incompat uint32, maxlen uint32) *journalWriter {
	w := &journalWriter{bs: testBS, incompat: incompat, buf: make([]byte, int(maxlen)*testBS), pos: 1}
	sb := w.buf[:SuperblockSize]
	be.PutUint32(sb[0:], Magic)
	be.PutUint32(sb[4:], BlockSuperV2)
	be.PutUint32(sb[0xC:], testBS)
	be.PutUint32(sb[0x10:], maxlen)
	be.PutUint32(sb[0x14:], 1)  // s_first
	be.PutUint32(sb[0x18:], 10) // s_sequence
	be.PutUint32(sb[0x1C:], 1)  // s_start
	be.PutUint32(sb[0x28:], incompat)
	copy(sb[0x30:], "0123456789abcdef")
	if w.csum() {
		sb[0x50] = CrcChecksumCrc32c
		w.seed = crc32c(^uint32(0), sb[0x30:0x40])
	}
	w.fixSuper()
	return w
}

func (w *journalWriter) csum() bool { return w.incompat&(IncompatCsumV2|IncompatCsumV3) != 0 }

func (w *journalWriter) fixSuper() {
	if w.csum() {
		be.PutUint32(w.buf[superCsumOff:], superChecksum(w.buf))
	}
}

func (w *journalWriter) block(n uint32) []byte { return w.buf[int(n)*w.bs : int(n+1)*w.bs] }

func (w *journalWriter) header(b []byte, typ, seq uint32) {
	be.PutUint32(b[0:], Magic)
	be.PutUint32(b[4:], typ)
	be.PutUint32(b[8:], seq)
}

// tx logs one transaction: data[i] is the new content of fs block blks[i].
func (w *journalWriter) tx(seq uint32, blks []uint64, data [][]byte, revokes []uint64, commit bool) {
	if len(revokes) > 0 {
		b := w.block(w.pos)
		w.pos++
		w.header(b, BlockRevoke, seq)
		off := RevokeHeaderSize
		for _, r := range revokes {
			if w.incompat&Incompat64bit != 0 {
				be.PutUint64(b[off:], r)
				off += 8
			} else {
				be.PutUint32(b[off:], uint32(r))
				off += 4
			}
		}
		be.PutUint32(b[HeaderSize:], uint32(off))
		if w.csum() {
			_, c := tailChecksum(w.seed, b)
			be.PutUint32(b[len(b)-TailSize:], c)
		}
	}
	if len(blks) > 0 {
		desc := w.block(w.pos)
		w.pos++
		w.header(desc, BlockDescriptor, seq)
		off := HeaderSize
		ts := tagBytes(w.incompat)
		for i, blk := range blks {
			d := w.block(w.pos)
			w.pos++
			copy(d, data[i])
			flags := uint32(0)
			if be.Uint32(d) == Magic {
				flags |= FlagEscape
				copy(d, []byte{0, 0, 0, 0})
			}
			if i > 0 {
				flags |= FlagSameUUID
			}
			if i == len(blks)-1 {
				flags |= FlagLastTag
			}
			c := dataChecksum(w.seed, seq, d)
			t := desc[off:]
			be.PutUint32(t, uint32(blk))
			if w.incompat&IncompatCsumV3 != 0 {
				be.PutUint32(t[4:], flags)
				be.PutUint32(t[8:], uint32(blk>>32))
				be.PutUint32(t[12:], c)
			} else {
				be.PutUint16(t[4:], uint16(c))
				be.PutUint16(t[6:], uint16(flags))
				if w.incompat&Incompat64bit != 0 {
					be.PutUint32(t[8:], uint32(blk>>32))
				}
			}
			off += ts
			if i == 0 {
				copy(desc[off:], "0123456789abcdef") // the UUID after the first tag
				off += 16
			}
		}
		if w.csum() {
			_, c := tailChecksum(w.seed, desc)
			be.PutUint32(desc[len(desc)-TailSize:], c)
		}
	}
	if commit {
		b := w.block(w.pos)
		w.pos++
		w.header(b, BlockCommit, seq)
		if w.csum() {
			_, c := commitChecksum(w.seed, b)
			be.PutUint32(b[commitCsumOff:], c)
		}
	}
}

func fill(s string) []byte { return bytes.Repeat([]byte(s), testBS/len(s)+1)[:testBS] }

// standardJournal: tx 10 logs blocks 100 and 101 (101 starts with the
// jbd2 magic, so it is escaped); tx 11 revokes 100 and logs 102; tx 12
// logs 100 again (after the revoke, so it counts) and a block past 2^32
// (200 without 64bit); tx 13 is not committed.
func standardJournal(incompat uint32) *journalWriter {
	w := newJournal(incompat, 64)
	magic := fill("x")
	be.PutUint32(magic, Magic)
	w.tx(10, []uint64{100, 101}, [][]byte{fill("a"), magic}, nil, true)
	w.tx(11, []uint64{102}, [][]byte{fill("b")}, []uint64{100}, true)
	high := uint64(200)
	if incompat&Incompat64bit != 0 {
		high = 1 << 33
	}
	w.tx(12, []uint64{100, high}, [][]byte{fill("c"), fill("d")}, nil, true)
	w.tx(13, []uint64{103}, [][]byte{fill("e")}, nil, false)
	return w
}

func TestReplay(t *testing.T) {
	for _, c := range []struct {
		name     string
		incompat uint32
	}{
		{"plain", IncompatRevoke},
		{"64bit", IncompatRevoke | Incompat64bit},
		{"csum-v2", IncompatRevoke | IncompatCsumV2},
		{"csum-v3-64bit", IncompatRevoke | Incompat64bit | IncompatCsumV3},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := standardJournal(c.incompat)
			res, err := Replay(bytes.NewReader(w.buf), int64(len(w.buf)), testBS)
			if err != nil {
				t.Fatal(err)
			}
			if res.Transactions != 3 {
				t.Errorf("%d transactions, want 3", res.Transactions)
			}
			want := map[uint64]string{100: "c", 101: "escaped", 102: "b"}
			if c.incompat&Incompat64bit != 0 {
				want[1<<33] = "d"
			} else {
				want[200] = "d"
			}
			if len(res.Blocks) != len(want) {
				t.Errorf("replayed %v, want blocks %v", res.Blocks, want)
			}
			for blk, content := range want {
				b, ok := res.Blocks[blk]
				if !ok {
					t.Errorf("block %d not replayed", blk)
					continue
				}
				data := w.block(uint32(b.Log))
				if content == "escaped" {
					if !b.Escaped || be.Uint32(data) != 0 {
						t.Errorf("block 101: escaped %v, log starts %x", b.Escaped, data[:4])
					}
					continue
				}
				if data[0] != content[0] {
					t.Errorf("block %d replays %q, want %q", blk, data[0], content)
				}
			}
			if _, ok := res.Blocks[103]; ok {
				t.Error("uncommitted transaction replayed")
			}
		})
	}
}

func TestReplayDamage(t *testing.T) {
	const v3 = IncompatRevoke | Incompat64bit | IncompatCsumV3
	t.Run("commit checksum ends the log", func(t *testing.T) {
		w := standardJournal(v3)
		// The second commit block: log blocks 1-4 are tx 10 (desc, 2
		// data, commit), so tx 11's commit is block 8 (revoke, desc,
		// data, commit).
		w.block(8)[100] ^= 1
		res, err := Replay(bytes.NewReader(w.buf), int64(len(w.buf)), testBS)
		if err != nil {
			t.Fatal(err)
		}
		if res.Transactions != 1 || len(res.Warnings) == 0 {
			t.Errorf("%d transactions, warnings %q; want 1 and a warning", res.Transactions, res.Warnings)
		}
	})
	t.Run("data checksum skips the block", func(t *testing.T) {
		w := standardJournal(v3)
		w.block(2)[10] ^= 1 // block 100's copy in tx 10 (overwritten later anyway)
		w.block(3)[10] ^= 1 // block 101's copy
		res, err := Replay(bytes.NewReader(w.buf), int64(len(w.buf)), testBS)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := res.Blocks[101]; ok || len(res.Warnings) == 0 {
			t.Errorf("damaged block replayed (warnings %q)", res.Warnings)
		}
	})
	t.Run("superblock checksum", func(t *testing.T) {
		w := standardJournal(v3)
		w.buf[0x60] ^= 1
		_, err := Replay(bytes.NewReader(w.buf), int64(len(w.buf)), testBS)
		if !errors.Is(err, fsys.ErrCorrupt) {
			t.Errorf("err %v, want ErrCorrupt", err)
		}
	})
	t.Run("unknown feature", func(t *testing.T) {
		w := newJournal(0x800, 16)
		_, err := Replay(bytes.NewReader(w.buf), int64(len(w.buf)), testBS)
		if !errors.Is(err, fsys.ErrUnsupported) {
			t.Errorf("err %v, want ErrUnsupported", err)
		}
	})
	t.Run("pending fast commits", func(t *testing.T) {
		w := newJournal(IncompatRevoke|IncompatFastCommit, 64)
		be.PutUint32(w.buf[0x54:], 8) // 8 fast-commit blocks: the log ends at 56
		w.fixSuper()
		w.tx(10, []uint64{100}, [][]byte{fill("a")}, nil, true)
		res, err := Replay(bytes.NewReader(w.buf), int64(len(w.buf)), testBS)
		if err != nil || res.Transactions != 1 {
			t.Fatalf("no fast commits: %v, %v", res, err)
		}
		fc := w.block(56)
		fc[0], fc[2] = 9, 8 // EXT4_FC_TAG_HEAD, length 8 (little-endian)
		fc[8] = 11          // for transaction 11, after the last full one
		_, err = Replay(bytes.NewReader(w.buf), int64(len(w.buf)), testBS)
		if !errors.Is(err, fsys.ErrUnsupported) {
			t.Errorf("err %v, want ErrUnsupported", err)
		}
	})
	t.Run("clean", func(t *testing.T) {
		w := standardJournal(0)
		be.PutUint32(w.buf[0x1C:], 0)
		res, err := Replay(bytes.NewReader(w.buf), int64(len(w.buf)), testBS)
		if err != nil || len(res.Blocks) != 0 {
			t.Errorf("clean journal: %v, %v", res, err)
		}
	})
	t.Run("wrapping log", func(t *testing.T) {
		// A log whose sequence numbers repeat around the ring must end.
		w := newJournal(IncompatRevoke, 8)
		for i := range uint32(7) {
			w.pos = 1 + i
			w.tx(10, nil, nil, nil, true) // every block a commit of tx 10
		}
		res, err := Replay(bytes.NewReader(w.buf), int64(len(w.buf)), testBS)
		if err != nil || res.Transactions > 7 {
			t.Errorf("%v, %v", res, err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		w := standardJournal(v3)
		_, err := Replay(bytes.NewReader(w.buf[:3*testBS]), int64(len(w.buf)), testBS)
		if !errors.Is(err, fsys.ErrCorrupt) {
			t.Errorf("err %v, want ErrCorrupt", err)
		}
	})
}

// FuzzReplay feeds arbitrary journals; seeds are the crafted ones above.
func FuzzReplay(f *testing.F) {
	for _, in := range []uint32{IncompatRevoke, IncompatRevoke | Incompat64bit | IncompatCsumV3, IncompatCsumV2} {
		f.Add(standardJournal(in).buf[:16*testBS])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Replay(bytes.NewReader(data), int64(len(data)), testBS)
		if err == nil && len(res.Blocks) > len(data)/testBS {
			t.Fatalf("%d blocks replayed from a %d-block journal", len(res.Blocks), len(data)/testBS)
		}
	})
}
