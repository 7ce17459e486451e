package ext

import (
	"sort"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Hashed lookup in an htree directory (directory.rst, "Hash Tree
// Directories"; the kernel's dx_probe and ext4_htree_next_block). The root
// (logical block 0) and up to one (two with large_dir) levels of interior
// nodes map hash ranges to leaf blocks, which are ordinary directory
// blocks. A name's leaf is found by hash; names whose hashes collide may
// continue in the next leaves, marked by the low bit of the next index
// entry's hash.

// dxFrame is one level of the path from the root to a leaf.
type dxFrame struct {
	b     []byte
	off   int // countlimit offset: entries start here
	count int
	at    int
}

// dxLookup finds name (already folded for casefolded directories) by hash.
// ok is false when the index cannot be used (damaged, unknown hash,
// checksum mismatch): the caller then scans the directory, which checks
// every leaf on its own. match compares an entry with the name.
func (f *FS) dxLookup(d *dir, name []byte, match func(dirent) bool) (ino uint64, ok bool, err error) {
	frames, hash, ok := f.dxProbe(d, name)
	if !ok {
		return 0, false, nil
	}
	for {
		bottom := &frames[len(frames)-1]
		lblk := uint64(disklayout.DecodeDxEntry(bottom.b, bottom.off, bottom.at).Block & 0x0FFFFFFF)
		if lblk >= d.blocks {
			return 0, false, nil
		}
		cb, err := f.dirBlock(d, lblk)
		if err != nil || cb == nil {
			return 0, false, nil
		}
		b, err := f.leaf(d, cb)
		if err != nil {
			return 0, false, nil
		}
		var found uint64
		if err := f.parseLeaf(d, b, f.blockOff(cb.blk), func(e dirent) bool {
			if match(e) {
				found = uint64(e.ino)
				return false
			}
			return true
		}); err != nil {
			return 0, false, nil
		}
		if found != 0 {
			return found, true, nil
		}
		more, ok := f.dxNext(d, frames, hash)
		if !ok {
			return 0, false, nil
		}
		if !more {
			return 0, true, nil
		}
	}
}

// dxProbe walks from the root to the leaf whose hash range holds name.
func (f *FS) dxProbe(d *dir, name []byte) ([]dxFrame, uint32, bool) {
	cb, err := f.dirBlock(d, 0)
	if err != nil || cb == nil {
		return nil, 0, false
	}
	b := cb.data
	info, err := disklayout.DecodeDxRootInfo(b)
	if err != nil || info.ReservedZero != 0 || info.InfoLength != disklayout.DxRootInfoLen {
		return nil, 0, false
	}
	levels := disklayout.DxMaxLevels
	if f.sb.HasIncompat(disklayout.IncompatLargedir) {
		levels = disklayout.DxMaxLevelsLarg
	}
	if int(info.IndirectLevels) >= levels {
		return nil, 0, false
	}
	v := info.HashVersion
	if v <= disklayout.DxHashTea && f.unsignedH {
		v += 3
	}
	hash, ok := dirHash(v, name, f.hashSeed)
	if !ok {
		return nil, 0, false
	}
	frames := make([]dxFrame, 0, levels)
	off := disklayout.DxRootInfoOff + int(info.InfoLength)
	for level := 0; ; level++ {
		fr, ok := f.dxNode(d, cb, off)
		if !ok {
			return nil, 0, false
		}
		// Last entry whose hash is <= ours; entry 0 covers from 0.
		fr.at = sort.Search(fr.count-1, func(i int) bool {
			return disklayout.DecodeDxEntry(fr.b, fr.off, i+1).Hash > hash
		})
		frames = append(frames, fr)
		if level == int(info.IndirectLevels) {
			return frames, hash, true
		}
		lblk := uint64(disklayout.DecodeDxEntry(fr.b, fr.off, fr.at).Block & 0x0FFFFFFF)
		if lblk == 0 || lblk >= d.blocks {
			return nil, 0, false
		}
		if cb, err = f.dirBlock(d, lblk); err != nil || cb == nil {
			return nil, 0, false
		}
		off = disklayout.DxNodeEntries
	}
}

// dxNode checks an index block whose countlimit is at off: the limit the
// block size implies, a count within it, and the checksum tail.
func (f *FS) dxNode(d *dir, cb *cblock, off int) (dxFrame, bool) {
	b := cb.data
	cl, err := disklayout.DecodeDxCountLimit(b, off)
	if err != nil {
		return dxFrame{}, false
	}
	tail := 0
	if f.csum {
		tail = disklayout.DxTailSize
	}
	if off == disklayout.DxNodeEntries && (le.Uint32(b) != 0 || disklayout.RecLen(le.Uint16(b[4:]), f.bs) != f.bs) {
		return dxFrame{}, false
	}
	if int(cl.Limit) != (f.bs-off-tail)/disklayout.DxEntrySize || cl.Count == 0 || cl.Count > cl.Limit {
		return dxFrame{}, false
	}
	if f.csum && cb.verified.Load()&verifyDx == 0 {
		stored, c, ok := disklayout.DxNodeChecksum(f.inodeSeed(d.n), b, off, int(cl.Count), int(cl.Limit))
		if !ok || stored != c {
			f.warn(f.corrupt(d.n.ino, f.blockOff(cb.blk), "htree node checksum mismatch; looking names up by scanning").Error())
			return dxFrame{}, false
		}
		cb.verified.Or(verifyDx)
	}
	return dxFrame{b: b, off: off, count: int(cl.Count)}, true
}

// dxNext moves to the next leaf when it may hold more names with our hash
// (its starting hash, less the collision bit, equals ours). more is false
// when the search is over.
func (f *FS) dxNext(d *dir, frames []dxFrame, hash uint32) (more, ok bool) {
	i := len(frames) - 1
	for ; i >= 0; i-- {
		if frames[i].at+1 < frames[i].count {
			break
		}
	}
	if i < 0 {
		return false, true
	}
	frames[i].at++
	if disklayout.DecodeDxEntry(frames[i].b, frames[i].off, frames[i].at).Hash&^1 != hash {
		return false, true
	}
	// Descend along the first entries to the next leaf.
	for ; i < len(frames)-1; i++ {
		lblk := uint64(disklayout.DecodeDxEntry(frames[i].b, frames[i].off, frames[i].at).Block & 0x0FFFFFFF)
		if lblk == 0 || lblk >= d.blocks {
			return false, false
		}
		cb, err := f.dirBlock(d, lblk)
		if err != nil || cb == nil {
			return false, false
		}
		fr, ok := f.dxNode(d, cb, disklayout.DxNodeEntries)
		if !ok {
			return false, false
		}
		frames[i+1] = fr
	}
	return true, true
}
