package testimages

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Field selects what Compare compares.
type Field uint32

const (
	FieldType    Field = 1 << iota // S_IFMT
	FieldPerm                      // permission, setuid, setgid, sticky bits
	FieldUid                       //
	FieldGid                       //
	FieldSize                      // size of non-directories
	FieldDirSize                   // size of directories
	FieldContent                   // SHA-256 of regular files
	FieldNlink                     //
	FieldLinks                     // hardlink groups, as sets of paths
	FieldTarget                    // symlink targets
	FieldRdev                      // device numbers
	FieldXattrs                    // names and values (NTFS streams are user.* xattrs)
	FieldAtime                     //
	FieldMtime                     //
	FieldCtime                     //
	FieldBtime                     // compared when want has one
	FieldBlocks                    // allocated 512-byte units
	FieldErrors                    // an Err in got is a difference

	AllFields Field = 1<<iota - 1
)

var fieldNames = []string{"type", "perm", "uid", "gid", "size", "dirsize", "content", "nlink",
	"links", "target", "rdev", "xattrs", "atime", "mtime", "ctime", "btime", "blocks", "errors"}

func (f Field) String() string {
	var s []string
	for i, n := range fieldNames {
		if f&(1<<i) != 0 {
			s = append(s, n)
		}
	}
	return strings.Join(s, "|")
}

// CompareOptions say what Compare looks at.
type CompareOptions struct {
	// Fields to compare; 0 means every field but atime and blocks.
	Fields Field
	// TimeTolerance makes times equal when they differ by less (or as
	// much); 0 means exact.
	TimeTolerance time.Duration
	// SkipDirTimes leaves out directory times, for fixtures whose tool
	// does not preserve them (mtools).
	SkipDirTimes bool
	// IgnorePaths are skipped with everything under them, in both
	// manifests.
	IgnorePaths []string
	// IgnoreXattrs are xattr name prefixes not compared.
	IgnoreXattrs []string
	// MaxDiffs caps the differences reported (0: 50); a last line says
	// how many more there were.
	MaxDiffs int
}

// ExtCompare compares everything a kernel ext mount shows.
func ExtCompare() CompareOptions { return CompareOptions{Fields: AllFields} }

// NTFSCompare compares what ntfs-3g shows that is the volume's own: not
// the permission bits and owners, which ntfs-3g synthesizes from mount
// options, nor directory sizes or block counts, which are its choices.
func NTFSCompare() CompareOptions {
	return CompareOptions{Fields: AllFields &^ (FieldPerm | FieldUid | FieldGid | FieldDirSize | FieldBlocks)}
}

// FATCompare compares what a FAT source tree and a FAT reader share:
// names, types, sizes, content and file mtimes (2 s steps).
func FATCompare() CompareOptions {
	return CompareOptions{
		Fields:       FieldType | FieldSize | FieldContent | FieldMtime | FieldErrors,
		SkipDirTimes: true,
	}
}

// Compare returns the differences between want (the oracle) and got, one
// readable line each: "path: field want X got Y", missing and unexpected
// entries, hardlink groups that differ. An empty result means equal.
func Compare(want, got *Manifest, o CompareOptions) []string {
	if o.Fields == 0 {
		o.Fields = AllFields &^ (FieldAtime | FieldBlocks)
	}
	if o.MaxDiffs <= 0 {
		o.MaxDiffs = 50
	}
	d := &differ{o: o}
	gm := map[string]*Entry{}
	for i := range got.Entries {
		gm[got.Entries[i].Path] = &got.Entries[i]
	}
	seen := map[string]bool{}
	for i := range want.Entries {
		w := &want.Entries[i]
		if d.ignored(w.Path) {
			continue
		}
		seen[w.Path] = true
		g := gm[w.Path]
		if g == nil {
			d.add("%s: missing (want %s)", w.Path, w.Type())
			continue
		}
		d.entry(w, g)
	}
	for i := range got.Entries {
		g := &got.Entries[i]
		if !seen[g.Path] && !d.ignored(g.Path) {
			d.add("%s: unexpected %s", g.Path, g.Type())
		}
	}
	if o.Fields&FieldLinks != 0 {
		d.links(want, got)
	}
	return d.result()
}

type differ struct {
	o     CompareOptions
	diffs []string
	more  int
}

func (d *differ) add(format string, args ...any) {
	if len(d.diffs) >= d.o.MaxDiffs {
		d.more++
		return
	}
	d.diffs = append(d.diffs, fmt.Sprintf(format, args...))
}

func (d *differ) result() []string {
	if d.more > 0 {
		d.diffs = append(d.diffs, fmt.Sprintf("... and %d more differences", d.more))
	}
	return d.diffs
}

func (d *differ) ignored(path string) bool {
	for _, p := range d.o.IgnorePaths {
		if path == p || strings.HasPrefix(path, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

func (d *differ) has(f Field) bool { return d.o.Fields&f != 0 }

func (d *differ) entry(w, g *Entry) {
	p := w.Path
	if g.Err != "" && g.Err != w.Err && d.has(FieldErrors) {
		d.add("%s: error %s", p, g.Err)
	}
	if d.has(FieldType) && w.Mode&0o170000 != g.Mode&0o170000 {
		d.add("%s: type want %s got %s", p, w.Type(), g.Type())
		return
	}
	if d.has(FieldPerm) && w.Mode&0o7777 != g.Mode&0o7777 {
		d.add("%s: perm want %04o got %04o", p, w.Mode&0o7777, g.Mode&0o7777)
	}
	if d.has(FieldUid) && w.Uid != g.Uid {
		d.add("%s: uid want %d got %d", p, w.Uid, g.Uid)
	}
	if d.has(FieldGid) && w.Gid != g.Gid {
		d.add("%s: gid want %d got %d", p, w.Gid, g.Gid)
	}
	sizeField := FieldSize
	if w.IsDir() {
		sizeField = FieldDirSize
	}
	if d.has(sizeField) && w.Size != g.Size {
		d.add("%s: size want %d got %d", p, w.Size, g.Size)
	}
	if d.has(FieldContent) && w.SHA256 != g.SHA256 {
		d.add("%s: content sha256 want %.16s got %.16s", p, w.SHA256, g.SHA256)
	}
	if d.has(FieldNlink) && w.Nlink != g.Nlink {
		d.add("%s: nlink want %d got %d", p, w.Nlink, g.Nlink)
	}
	if d.has(FieldTarget) && w.Target != g.Target {
		d.add("%s: target want %q got %q", p, w.Target, g.Target)
	}
	if d.has(FieldRdev) && w.Rdev != g.Rdev {
		d.add("%s: rdev want %#x got %#x", p, w.Rdev, g.Rdev)
	}
	if d.has(FieldBlocks) && w.Blocks != g.Blocks {
		d.add("%s: blocks want %d got %d", p, w.Blocks, g.Blocks)
	}
	if d.has(FieldXattrs) {
		d.xattrs(p, w.Xattrs, g.Xattrs)
	}
	if d.o.SkipDirTimes && w.IsDir() {
		return
	}
	d.time(p, "atime", FieldAtime, w.Atime, g.Atime)
	d.time(p, "mtime", FieldMtime, w.Mtime, g.Mtime)
	d.time(p, "ctime", FieldCtime, w.Ctime, g.Ctime)
	if !w.Btime.IsZero() {
		d.time(p, "btime", FieldBtime, w.Btime, g.Btime)
	}
}

func (d *differ) time(p, name string, f Field, w, g time.Time) {
	if !d.has(f) || w.Equal(g) {
		return
	}
	if d.o.TimeTolerance > 0 {
		// Compare seconds first: a Duration overflows past 292 years.
		ds := w.Unix() - g.Unix()
		if ds > -1<<32 && ds < 1<<32 {
			if delta := w.Sub(g); delta.Abs() <= d.o.TimeTolerance {
				return
			}
		}
	}
	d.add("%s: %s want %s got %s", p, name, w.Format(time.RFC3339Nano), g.Format(time.RFC3339Nano))
}

func (d *differ) xattrIgnored(name string) bool {
	for _, p := range d.o.IgnoreXattrs {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func (d *differ) xattrs(p string, w, g map[string]string) {
	names := map[string]bool{}
	for n := range w {
		names[n] = true
	}
	for n := range g {
		names[n] = true
	}
	var sorted []string
	for n := range names {
		if !d.xattrIgnored(n) {
			sorted = append(sorted, n)
		}
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		wv, wok := w[n]
		gv, gok := g[n]
		switch {
		case !gok:
			d.add("%s: xattr %s missing (want %.80q)", p, n, wv)
		case !wok:
			d.add("%s: xattr %s unexpected (got %.80q)", p, n, gv)
		case wv != gv:
			d.add("%s: xattr %s want %.80q got %.80q", p, n, wv, gv)
		}
	}
}

// links compares hardlink groups as partitions of paths: each path that
// is hardlinked in either manifest must share its inode with the same
// other paths in both. Raw inode numbers are never compared.
func (d *differ) links(want, got *Manifest) {
	groupOf := func(m *Manifest) map[string]string {
		out := map[string]string{}
		for _, g := range m.HardlinkGroups() {
			var kept []string
			for _, p := range g {
				if !d.ignored(p) {
					kept = append(kept, p)
				}
			}
			key := strings.Join(kept, ", ")
			for _, p := range kept {
				out[p] = key
			}
		}
		return out
	}
	wg, gg := groupOf(want), groupOf(got)
	reported := map[string]bool{}
	check := func(p string) {
		w, g := wg[p], gg[p]
		if w == g || reported[w+"\x00"+g] {
			return
		}
		reported[w+"\x00"+g] = true
		if w == "" {
			w = "(none)"
		}
		if g == "" {
			g = "(none)"
		}
		d.add("%s: hardlinks want [%s] got [%s]", p, w, g)
	}
	var paths []string
	for p := range wg {
		paths = append(paths, p)
	}
	for p := range gg {
		if _, ok := wg[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		check(p)
	}
}
