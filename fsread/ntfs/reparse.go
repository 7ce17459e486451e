package ntfs

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
)

// Symlinks and junctions are translated as ntfs-3g's ntfs_make_symlink
// (libntfs-3g/reparse.c) does, so targets read the same through vmmount
// and through an ntfs-3g mount at Options.MountPoint.

// reparseTarget returns the target a reparse point shows as a symlink, or
// ntfs-3g's "unsupported reparse tag" text.
func (f *FS) reparseTarget(in *inode) string {
	in.targetOnce.Do(func() {
		t, ok := f.makeSymlink(in)
		if !ok {
			tag := uint32(0)
			if len(in.reparse) >= 4 {
				tag = le32(in.reparse)
			}
			t = fmt.Sprintf("unsupported reparse tag 0x%08x", tag)
		}
		in.target = t
	})
	return in.target
}

const mappingDir = ".NTFS-3G/"

func (f *FS) makeSymlink(in *inode) (string, bool) {
	b := in.reparse
	if len(b) < 8 {
		return "", false
	}
	tag, dataLen := le32(b), int(le16(b[4:]))
	hdr := 8
	if tag&tagMicrosoft == 0 {
		hdr += 16 // GUID of a third-party tag
	}
	if tag == 0 || dataLen+hdr != len(b) {
		return "", false
	}
	units := func(off, n int) ([]uint16, bool) {
		if off < 0 || n < 0 || off+n > len(b) || n%2 != 0 {
			return nil, false
		}
		u := make([]uint16, n/2)
		for i := range u {
			u[i] = le16(b[off+2*i:])
		}
		return u, true
	}
	switch tag {
	case tagMountPoint:
		if len(b) < 16 || !in.isDir {
			return "", false
		}
		p, ok := units(16+int(le16(b[8:])), int(le16(b[10:])))
		if !ok {
			return "", false
		}
		return f.fullLink(p, in.isDir)
	case tagSymlink:
		if len(b) < 20 {
			return "", false
		}
		p, ok := units(20+int(le16(b[8:])), int(le16(b[10:])))
		if !ok || len(p) == 0 {
			return "", false
		}
		relative := le32(b[16:])&1 != 0
		at := func(i int) uint16 {
			if i < len(p) {
				return p[i]
			}
			return 0
		}
		switch {
		case at(0) == '\\' && (at(1) == '?' || at(1) == '\\'):
			if !relative {
				return f.fullLink(p, in.isDir)
			}
		case at(0) == '\\' || at(1) == ':':
			if relative {
				return f.absLink(p, in.isDir)
			}
		default:
			if relative {
				return f.relLink(in, p)
			}
		}
		return "", false
	case tagLXSymlink:
		if dataLen <= 4 || le32(b[8:]) != 2 {
			return "", false
		}
		return string(b[12 : 8+dataLen]), true
	}
	return "", false
}

// ucs converts UTF-16 to UTF-8, failing on unpaired surrogates as
// ntfs_ucstombs does.
func ucs(u []uint16) (string, bool) {
	for i := 0; i < len(u); i++ {
		switch {
		case utf16.IsSurrogate(rune(u[i])) && u[i] < 0xDC00 && i+1 < len(u) && u[i+1] >= 0xDC00 && u[i+1] < 0xE000:
			i++
		case utf16.IsSurrogate(rune(u[i])):
			return "", false
		}
	}
	return string(utf16.Decode(u)), true
}

func (f *FS) mount(rest string) string { return f.mountPoint + "/" + rest }

// toMapping is the /.NTFS-3G/ link for a target outside the volume:
// backslashes become slashes and the drive letter is upper case.
func (f *FS) toMapping(u []uint16) (string, bool) {
	t, ok := ucs(u)
	if !ok || t == "" {
		return "", false
	}
	t = strings.ReplaceAll(t, `\`, "/")
	if len(t) >= 2 && t[1] == ':' && t[0] >= 'a' && t[0] <= 'z' {
		t = string(t[0]-'a'+'A') + t[1:]
	}
	return f.mount(mappingDir + t), true
}

func hasPrefix(u []uint16, s string) bool {
	if len(u) < len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if u[i] != uint16(s[i]) {
			return false
		}
	}
	return true
}

// fullLink translates "\??\X:\path" (a directory junction) or
// "\\?\Volume{guid}\" (ntfs-3g reparse.c, ntfs_get_fulllink).
func (f *FS) fullLink(j []uint16, isDir bool) (string, bool) {
	n := len(j)
	at := func(i int) uint16 {
		if i < n {
			return j[i]
		}
		return 0
	}
	dirJunction := n >= 7 && hasPrefix(j, `\??\`) && j[4] != 0 && j[5] == ':' && j[6] == '\\'
	volJunction := !dirJunction && n >= 12 && hasPrefix(j, `\\?\Volume{`) && j[n-1] == '\\'
	if dirJunction && at(7) != 0 && !f.driveLetterDefined(j[4]) {
		if t, ok := f.searchAbsolute(j[7:], isDir); ok {
			return f.mount(t), true
		}
	}
	switch {
	case dirJunction:
		return f.toMapping(j[4:])
	case volJunction:
		return f.toMapping(j[4 : n-1])
	}
	return "", false
}

// absLink translates "X:\path" or "\path" symlinks (ntfs_get_abslink).
func (f *FS) absLink(j []uint16, isDir bool) (string, bool) {
	n := len(j)
	full := n >= 3 && j[0] != 0 && j[1] == ':' && j[2] == '\\'
	abs := !full && n >= 1 && j[0] == '\\'
	if full && n >= 4 && j[3] != 0 && !f.driveLetterDefined(j[0]) {
		if t, ok := f.searchAbsolute(j[3:], isDir); ok {
			return f.mount(t), true
		}
	}
	if abs {
		if t, ok := f.searchAbsolute(j[1:], isDir); ok {
			return f.mount(t), true
		}
	}
	if full {
		return f.toMapping(j)
	}
	return "", false
}

// driveLetterDefined says whether /.NTFS-3G/X: exists, which makes ntfs-3g
// send X: paths there instead of into this volume.
func (f *FS) driveLetterDefined(letter uint16) bool {
	if letter >= 'a' && letter <= 'z' {
		letter -= 'a' - 'A'
	}
	d, err := f.Lookup(mftRecordRoot, strings.TrimSuffix(mappingDir, "/"))
	if err != nil {
		return false
	}
	_, err = f.Lookup(d, string(rune(letter))+":")
	return err == nil
}

// fixName finds name in directory dir ignoring case, as an NTFS index
// lookup with upper-cased keys does, DOS names included; it rewrites name
// with the case found and returns the entry's inode.
func (f *FS) fixName(dir uint64, name []uint16) (uint64, bool) {
	if len(name) == 0 {
		return 0, false
	}
	d, err := f.list(dir)
	if err != nil {
		return 0, false
	}
	want := foldUnits(name)
	for _, e := range d.ents {
		u := utf16.Encode([]rune(e.name))
		if len(u) == len(name) && foldUnits(u) == want {
			copy(name, u)
			return e.ino, true
		}
	}
	return 0, false
}

func foldUnits(u []uint16) string {
	r := make([]rune, len(u))
	for i, c := range u {
		r[i] = unicode.ToUpper(rune(c))
	}
	return string(r)
}

// searchAbsolute walks path (backslash-separated, from the root) fixing
// the case of each component, until a missing name, a non-directory or a
// reparse point; the rest is left as it is (ntfs-3g, search_absolute).
func (f *FS) searchAbsolute(path []uint16, isDir bool) (string, bool) {
	p := append([]uint16(nil), path...)
	n := len(p)
	cur, err := f.inode(mftRecordRoot)
	start := 0
	for err == nil && cur != nil {
		l := 0
		for start+l < n && p[start+l] != '\\' {
			l++
		}
		ino, ok := f.fixName(cur.ino, p[start:start+l])
		cur = nil
		if !ok {
			break
		}
		if cur, err = f.inode(ino); err != nil {
			cur = nil
			break
		}
		start += l
		if start < n {
			p[start] = '/'
			start++
		}
		if !cur.isDir || cur.si.FileAttributes&fileAttrReparsePoint != 0 || start >= n {
			break
		}
	}
	if cur == nil {
		return "", false
	}
	if cur.isDir != isDir && cur.si.FileAttributes&fileAttrReparsePoint == 0 {
		return "", false
	}
	return ucs(p)
}

// parentOf is the directory of an inode's first name.
func (f *FS) parentOf(in *inode) *inode {
	if len(in.names) == 0 {
		return nil
	}
	p, err := f.inode(in.names[0].parent)
	if err != nil {
		return nil
	}
	return p
}

// relLink translates a relative symlink target, starting from the
// directory of the link's first name (ntfs-3g, search_relative).
func (f *FS) relLink(in *inode, path []uint16) (string, bool) {
	p := append([]uint16(nil), path...)
	n := len(p)
	cur := f.parentOf(in)
	pos, ok, more := 0, true, false
	for budget := 32; cur != nil && ok && !more && pos < n-1; {
		if budget--; budget == 0 {
			break
		}
		switch {
		case n >= pos+2 && p[pos] == '.' && p[pos+1] == '\\':
			p[pos+1] = '/'
			pos += 2
		case n >= pos+3 && p[pos] == '.' && p[pos+1] == '.' && p[pos+2] == '\\':
			p[pos+2] = '/'
			pos += 3
			if cur = f.parentOf(cur); cur == nil {
				ok = false
			}
		default:
			l := 0
			for pos+l < n && p[pos+l] != '\\' {
				l++
			}
			ino, found := f.fixName(cur.ino, p[pos:pos+l])
			if l == 0 || !found {
				ok = false
				break
			}
			next, err := f.inode(ino)
			if err != nil {
				ok = false
				break
			}
			cur = next
			if cur.si.FileAttributes&fileAttrReparsePoint != 0 {
				more = true
			}
			if pos+l < n {
				p[pos+l] = '/'
				pos += l + 1
			} else {
				pos += l
				if !more && in.isDir != cur.isDir {
					ok = false
				}
			}
		}
	}
	if !ok {
		return "", false
	}
	return ucs(p)
}
