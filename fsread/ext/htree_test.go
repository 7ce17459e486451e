package ext

import (
	"bytes"
	"fmt"
	"sort"
	"testing"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// identityMapper maps logical block n of a crafted directory to block n.
type identityMapper struct{}

func (identityMapper) mapBlock(l uint64) (run, error) { return run{kind: runData, phys: l, n: 1}, nil }

// craftedHtree builds, byte by byte, a three-level htree directory (root,
// two levels of index nodes, leaves) as large_dir allows, of 1 KiB blocks
// holding 2000 names; the index entry of one leaf carries the collision
// bit, so finding that leaf's first name needs the continuation rule.
func craftedHtree(t *testing.T, largedir bool) (*FS, *dir, []string, string) {
	const bs = 1024
	const fan = 8
	type named struct {
		name string
		hash uint32
	}
	var names []named
	for i := range 2000 {
		n := fmt.Sprintf("crafted-name-%05d", i)
		h, _ := dirHash(disklayout.DxHashHalfMD4, []byte(n), [4]uint32{})
		names = append(names, named{n, h})
	}
	sort.Slice(names, func(i, j int) bool { return names[i].hash < names[j].hash })

	type entry struct {
		hash uint32
		blk  uint32
	}
	var blocks [][]byte
	alloc := func() uint32 {
		blocks = append(blocks, make([]byte, bs))
		return uint32(len(blocks) - 1)
	}
	root := alloc() // block 0
	// Leaves: 4 names each.
	var level []entry
	for i := 0; i < len(names); i += 4 {
		blk := alloc()
		b := blocks[blk]
		off := 0
		for j := i; j < min(i+4, len(names)); j++ {
			n := names[j].name
			rl := disklayout.DirentMinLen(len(n))
			if j == min(i+4, len(names))-1 {
				rl = bs - off
			}
			le.PutUint32(b[off:], uint32(1000+j))
			le.PutUint16(b[off+4:], uint16(rl))
			b[off+6] = byte(len(n))
			b[off+7] = disklayout.FtRegFile
			copy(b[off+8:], n)
			off += rl
		}
		level = append(level, entry{names[i].hash, blk})
	}
	// The collision bit on leaf 100's entry: its first name hashes below
	// the entry, so the search lands in leaf 99 and must continue.
	collided := names[100*4].name
	level[100].hash |= 1
	writeNode := func(b []byte, off int, ents []entry) {
		limit := (bs - off) / disklayout.DxEntrySize
		le.PutUint16(b[off:], uint16(limit))
		le.PutUint16(b[off+2:], uint16(len(ents)))
		le.PutUint32(b[off+4:], ents[0].blk)
		for i := 1; i < len(ents); i++ {
			le.PutUint32(b[off+i*8:], ents[i].hash)
			le.PutUint32(b[off+i*8+4:], ents[i].blk)
		}
	}
	for range 2 { // two levels of interior nodes
		var up []entry
		for i := 0; i < len(level); i += fan {
			blk := alloc()
			b := blocks[blk]
			le.PutUint16(b[4:], bs) // fake empty entry spanning the block
			writeNode(b, disklayout.DxNodeEntries, level[i:min(i+fan, len(level))])
			up = append(up, entry{level[i].hash, blk})
		}
		level = up
	}
	b := blocks[root]
	le.PutUint32(b[0:], 100)
	le.PutUint16(b[4:], 12)
	b[6], b[7] = 1, disklayout.FtDir
	copy(b[8:], ".")
	le.PutUint32(b[12:], 2)
	le.PutUint16(b[16:], bs-12)
	b[18], b[19] = 2, disklayout.FtDir
	copy(b[20:], "..")
	b[disklayout.DxRootInfoOff+4] = disklayout.DxHashHalfMD4
	b[disklayout.DxRootInfoOff+5] = disklayout.DxRootInfoLen
	b[disklayout.DxRootInfoOff+6] = 2 // indirect levels
	writeNode(b, disklayout.DxRootEntries, level)

	img := bytes.Join(blocks, nil)
	sb := &disklayout.Superblock{FeatureCompat: disklayout.CompatDirIndex, FeatureIncompat: disklayout.IncompatFiletype}
	if largedir {
		sb.FeatureIncompat |= disklayout.IncompatLargedir
	}
	f := &FS{label: "crafted", sb: sb, bs: bs, blocks: uint64(len(blocks)), inodes: 1 << 20,
		dev: &device{r: bytes.NewReader(img), size: int64(len(img)), bs: bs}}
	f.cache = newBlockCache(1<<20, bs)
	f.dirs = newDirCache(1 << 20)
	n := &inode{ino: 100, raw: make([]byte, 256), size: int64(len(img))}
	n.d.Mode = 0o40755
	n.d.Flags = disklayout.FlagIndex
	d := &dir{n: n, m: identityMapper{}, blocks: uint64(len(blocks))}
	var all []string
	for _, x := range names {
		all = append(all, x.name)
	}
	return f, d, all, collided
}

func TestHtreeThreeLevels(t *testing.T) {
	f, d, names, collided := craftedHtree(t, true)
	match := func(name string) func(dirent) bool {
		return func(e dirent) bool { return string(e.name) == name }
	}
	for _, n := range names {
		ino, ok, err := f.dxLookup(d, []byte(n), match(n))
		if err != nil || !ok || ino == 0 {
			t.Fatalf("dxLookup(%q) = %d, %v, %v; want found by hash", n, ino, ok, err)
		}
	}
	if ino, ok, _ := f.dxLookup(d, []byte(collided), match(collided)); !ok || ino == 0 {
		t.Errorf("collided name %q not found through the continuation", collided)
	}
	if ino, ok, _ := f.dxLookup(d, []byte("absent"), match("absent")); !ok || ino != 0 {
		t.Errorf("absent name: %d, %v", ino, ok)
	}
	if p, err := f.lookup(d, []byte("..")); err != nil || p != 2 {
		t.Errorf("lookup(..) = %d, %v; want 2", p, err)
	}
	ents := 0
	if err := f.scanDir(d, false, func(e dirent) bool { ents++; return true }); err != nil || ents != len(names) {
		t.Errorf("scan: %d entries, %v", ents, err)
	}
}

// Without large_dir, three levels are invalid: the index is not used and
// lookups scan (and still find every name).
func TestHtreeThreeLevelsWithoutLargeDir(t *testing.T) {
	f, d, names, _ := craftedHtree(t, false)
	if _, ok, _ := f.dxLookup(d, []byte(names[0]), func(dirent) bool { return true }); ok {
		t.Error("three-level index used without large_dir")
	}
	for _, n := range names[:50] {
		if ino, err := f.lookup(d, []byte(n)); err != nil || ino == 0 {
			t.Errorf("lookup(%q) = %d, %v", n, ino, err)
		}
	}
}
