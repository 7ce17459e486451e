package fat

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"unicode/utf16"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// dent is one listed name of a directory.
type dent struct {
	name  string // long name, or the 8.3 name as vfat shows it
	short string // the 8.3 name without case flags, for lookups by alias
	ino   uint64
	attr  uint8
}

// dirList is a parsed directory.
type dirList struct {
	ents []dent
	// subdirs counts short entries with the directory bit, "." and ".."
	// included, as the kernel's fat_subdirs does for nlink.
	subdirs int
	size    int64 // bytes of directory data
	label   string
}

// seg maps a range of directory data to its place in the volume.
type seg struct{ pos, off, n int64 }

// dirData reads the whole directory whose first cluster is first (or the
// FAT12/16 root when ino is the root).
func (f *FS) dirData(ino uint64, first uint32) ([]byte, []seg, error) {
	g := &f.geo
	var segs []seg
	if ino == rootIno && g.kind != fat32 {
		segs = []seg{{0, g.rootOff, g.rootSize}}
	} else {
		if ino == rootIno {
			first = g.rootCluster
		}
		if first == 0 {
			return nil, nil, f.corrupt(ino, -1, "directory has no clusters")
		}
		runs, n, ended, err := f.fat.chain(ino, first, maxDirSize/g.clusterSize+1)
		if err != nil {
			return nil, nil, err
		}
		if !ended {
			return nil, nil, f.corrupt(ino, -1, "directory from cluster %d is larger than %d bytes (%d clusters)", first, maxDirSize, n)
		}
		var pos int64
		for _, r := range runs {
			l := int64(r.n) * g.clusterSize
			segs = append(segs, seg{pos, g.clusterOff(r.start), l})
			pos += l
		}
	}
	var total int64
	for _, s := range segs {
		total += s.n
	}
	buf := make([]byte, total)
	for _, s := range segs {
		if m, err := f.r.ReadAt(buf[s.pos:s.pos+s.n], s.off); m < int(s.n) {
			if err == nil || errors.Is(err, io.EOF) {
				return nil, nil, f.corrupt(ino, s.off+int64(m), "directory past the end of the volume")
			}
			return nil, nil, fmt.Errorf("%s: inode %d: reading directory at byte %d: %w", f.name, ino, s.off, err)
		}
	}
	return buf, segs, nil
}

// volOff maps a position in directory data to a volume offset.
func volOff(segs []seg, pos int64) int64 {
	i := sort.Search(len(segs), func(i int) bool { return segs[i].pos+segs[i].n > pos })
	return segs[i].off + pos - segs[i].pos
}

// list returns the parsed directory ino (first cluster first).
func (f *FS) list(ino uint64, first uint32) (*dirList, error) {
	if d, ok := f.dirs.Get(ino); ok {
		return d, nil
	}
	data, segs, err := f.dirData(ino, first)
	if err != nil {
		return nil, err
	}
	d := parseDir(data, segs)
	f.dirs.Add(ino, d)
	return d, nil
}

func isFree(b byte) bool { return b == 0 || b == slotDeleted }

// parseDir decodes directory data the way Linux vfat's readdir does
// (fs/fat/dir.c: __fat_readdir, fat_parse_long): a long name is used when
// its slots are in sequence with one checksum that matches the 8.3 entry
// after them; any break falls back to the 8.3 name or skips the slots.
func parseDir(data []byte, segs []seg) *dirList {
	d := &dirList{size: int64(len(data))}
	n := len(data) / dirEntrySize
	at := func(i int) []byte { return data[i*dirEntrySize : (i+1)*dirEntrySize] }
	var units [lfnMaxSlots*13 + 1]uint16
	for i := 0; i < n; i++ {
		raw := at(i)
		attr := raw[11]
		if !isFree(raw[0]) && attr&attrVolumeID == 0 && attr&attrDirectory != 0 {
			d.subdirs++
		}
		if attr != attrLongName {
			if isFree(raw[0]) {
				continue
			}
			if attr&attrVolumeID != 0 {
				if d.label == "" && i < n {
					d.label = shortLabel(raw[:11])
				}
				continue
			}
			d.add(raw, segs, int64(i)*dirEntrySize, nil)
			continue
		}
		// A run of long name slots, last slot first.
	parseLong:
		if raw[0] == slotDeleted {
			continue
		}
		l := decodeLFN(raw)
		if l.Ord&lfnLast == 0 {
			continue
		}
		slots := int(l.Ord &^ lfnLast)
		if slots == 0 || slots > lfnMaxSlots {
			continue
		}
		sum := l.Chksum
		j := i
		ok := true
		for slot := slots - 1; ; slot-- {
			lj := decodeLFN(at(j))
			u := lj.units()
			copy(units[slot*13:], u[:])
			if at(j)[0]&lfnLast != 0 {
				units[slot*13+13] = 0
			}
			j++
			if j >= n {
				return d // the directory ends inside a long name
			}
			if slot == 0 {
				break
			}
			next := at(j)
			if next[11] != attrLongName {
				ok = false // not a long name after all: j is read as a short entry
				break
			}
			nl := decodeLFN(next)
			if int(nl.Ord&^lfnLast) != slot || nl.Chksum != sum {
				i, raw = j, next
				goto parseLong
			}
		}
		i = j
		raw = at(j)
		if !ok {
			i-- // let the loop read entry j afresh
			continue
		}
		if raw[0] == slotDeleted {
			continue
		}
		if raw[11] == attrLongName {
			goto parseLong
		}
		if raw[0] == 0 || raw[11]&attrVolumeID != 0 {
			continue
		}
		if raw[11]&attrDirectory != 0 {
			d.subdirs++
		}
		de := decodeDirEntry(raw)
		var long []uint16
		if shortNameChecksum(&de.Name) == sum {
			long = units[:slots*13]
		}
		d.add(raw, segs, int64(i)*dirEntrySize, long)
	}
	return d
}

// add lists the 8.3 entry raw at data position pos with its long name.
func (d *dirList) add(raw []byte, segs []seg, pos int64, long []uint16) {
	de := decodeDirEntry(raw)
	if string(de.Name[:]) == ".          " || string(de.Name[:]) == "..         " {
		return
	}
	short := shortName(&de, false)
	name := ""
	if long != nil {
		for k, u := range long {
			if u == 0 {
				long = long[:k]
				break
			}
		}
		name = string(utf16.Decode(long))
	}
	if name == "" {
		name = shortName(&de, true)
	}
	d.ents = append(d.ents, dent{name: name, short: short, ino: uint64(volOff(segs, pos)) / dirEntrySize, attr: de.Attr})
}

// shortName formats an 8.3 name: base, then "." and the extension if there
// is one; with caseFlags, the NT lowercase flags apply.
func shortName(de *dirEntry, caseFlags bool) string {
	var nm [11]byte
	copy(nm[:], de.Name[:])
	if nm[0] == slotKanji {
		nm[0] = slotDeleted
	}
	base := strings.TrimRight(cp437String(nm[:8]), " ")
	ext := strings.TrimRight(cp437String(nm[8:]), " ")
	if caseFlags && de.NTRes&ntLowerBase != 0 {
		base = strings.ToLower(base)
	}
	if caseFlags && de.NTRes&ntLowerExt != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}

// rootLabel is the label of the volume label entry in the root directory,
// which Linux (blkid) prefers to the boot sector's copy.
func (f *FS) rootLabel() (string, error) {
	d, err := f.list(rootIno, 0)
	if err != nil {
		return "", err
	}
	return d.label, nil
}

// dirOf returns the first cluster of directory ino, checking it is one.
func (f *FS) dirOf(ino uint64) (uint32, error) {
	if ino == rootIno {
		return 0, nil
	}
	de, err := f.entryAt(ino)
	if err != nil {
		return 0, err
	}
	if de.Attr&attrDirectory == 0 {
		return 0, fmt.Errorf("%s: inode %d: %w", f.name, ino, fsys.ErrNotDir)
	}
	return de.firstCluster(), nil
}

// ReadDir lists directory dir in on-disk order.
func (f *FS) ReadDir(dir uint64) ([]fsys.DirEntry, error) {
	first, err := f.dirOf(dir)
	if err != nil {
		return nil, err
	}
	d, err := f.list(dir, first)
	if err != nil {
		return nil, err
	}
	out := make([]fsys.DirEntry, 0, len(d.ents))
	for _, e := range d.ents {
		var t fs.FileMode
		if e.attr&attrDirectory != 0 {
			t = fs.ModeDir
		}
		out = append(out, fsys.DirEntry{Name: e.name, Ino: e.ino, Type: t})
	}
	return out, nil
}

// Lookup finds name in dir: the exact name first, then, as vfat does, the
// long or 8.3 name regardless of case.
func (f *FS) Lookup(dir uint64, name string) (uint64, error) {
	first, err := f.dirOf(dir)
	if err != nil {
		return 0, err
	}
	d, err := f.list(dir, first)
	if err != nil {
		return 0, err
	}
	for _, e := range d.ents {
		if e.name == name {
			return e.ino, nil
		}
	}
	for _, e := range d.ents {
		if strings.EqualFold(e.name, name) || strings.EqualFold(e.short, name) {
			return e.ino, nil
		}
	}
	return 0, fmt.Errorf("%s: inode %d: %q: %w", f.name, dir, name, fs.ErrNotExist)
}

// cp437 maps bytes 0x80..0xFF of code page 437, the kernel's default
// codepage for 8.3 names, to Unicode.
var cp437 = [128]rune{
	'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å',
	'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ',
	'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»',
	'░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐',
	'└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧',
	'╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀',
	'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩',
	'≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u00a0',
}

func cp437String(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c < 0x80 {
			sb.WriteByte(c)
		} else {
			sb.WriteRune(cp437[c-0x80])
		}
	}
	return sb.String()
}
