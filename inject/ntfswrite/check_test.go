package ntfswrite

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/vmmount/vmmount/fsread/ntfs"
	"github.com/vmmount/vmmount/testimages"
)

// checkImage runs every check on an image after a transaction: ntfsfix
// -n, the structure (checkStructure), and the tree as ntfs-3g mounts it
// against our own reader. nlinkOf are paths whose link counts the readers
// show differently (see compareReaders).
func checkImage(t testing.TB, img string, nlinkOf ...string) *testimages.Manifest {
	t.Helper()
	ntfsfix(t, img, "after the transaction")
	for _, p := range checkStructure(img) {
		t.Error(p)
	}
	if t.Failed() {
		t.FailNow()
	}
	return compareReaders(t, img, nlinkOf...)
}

// compareReaders scans the ntfs-3g read-only mount of img and our reader,
// compares them and returns the ntfs-3g manifest. The link counts of
// nlinkOf are not compared: fsread/ntfs counts a file's names without its
// DOS (8.3) name, ntfs-3g shows the record's link count, which counts it.
func compareReaders(t testing.TB, img string, nlinkOf ...string) *testimages.Manifest {
	t.Helper()
	mnt := t.TempDir()
	umount, err := testimages.FuseMount(mnt, "ntfs-3g", "-o", "ro,no_detach,streams_interface=xattr", img, mnt)
	if err != nil {
		t.Fatal(err)
	}
	want, err := testimages.ScanDirWith(mnt, testimages.ScanOptions{ExtraXattrs: []string{testimages.XattrNTFSAttrib}})
	if uerr := umount(); err == nil {
		err = uerr
	}
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	r, err := ntfs.Open(fh, st.Size(), ntfs.Options{Name: "check", MountPoint: mnt})
	if err != nil {
		t.Fatal(err)
	}
	if w := r.Warnings(); len(w) > 0 {
		t.Errorf("fsread/ntfs warns: %q", w)
	}
	got, err := testimages.ScanFS(r)
	if err != nil {
		t.Fatal(err)
	}
	o := testimages.NTFSCompare()
	o.IgnorePaths = nlinkOf
	diffs := testimages.Compare(want, got, o)
	if len(nlinkOf) > 0 {
		o = testimages.NTFSCompare()
		o.Fields &^= testimages.FieldNlink
		diffs = append(diffs, testimages.Compare(want, got, o)...)
	}
	for _, d := range diffs {
		t.Errorf("ntfs-3g vs fsread/ntfs: %s", d)
	}
	return want
}

// checkStructure checks what ntfsfix does not: every in-use record is
// marked in $MFT's bitmap and every marked record past the reserved ones
// is in use; every cluster a non-resident attribute maps is marked in
// $Bitmap, once, and no other cluster is; each directory index is a
// B+ tree in collation order whose blocks are exactly those $BITMAP $I30
// marks, with leaves at one depth, whose entries point to records that
// have that name, and every name of every file is in its directory; the
// index copies of a file's sizes match its $DATA; $MFTMirr matches.
func checkStructure(img string) []string {
	var probs []string
	bad := func(format string, args ...any) {
		if len(probs) < 60 {
			probs = append(probs, fmt.Sprintf(format, args...))
		}
	}
	f, err := openFile(img)
	if err != nil {
		return []string{fmt.Sprintf("open: %v", err)}
	}
	d, bm := f.mftData(), f.mftBitmap()
	nrec := d.init / f.recSize
	owner := make([]int64, f.clusters) // record+1 owning each cluster
	claim := func(num uint64, a *rattr) {
		for _, r := range a.runs {
			if r.LCN < 0 {
				continue
			}
			for c := r.LCN; c < r.LCN+r.N; c++ {
				if o := owner[c]; o != 0 {
					bad("cluster %d mapped by records %d and %d", c, o-1, num)
				}
				owner[c] = int64(num) + 1
			}
		}
	}
	type fname struct {
		parent uint64
		name   string
		ns     uint8
		size   int64
	}
	recs := map[uint64]*mrec{}
	names := map[uint64][]fname{}
	for num := uint64(0); num < uint64(nrec); num++ {
		b, err := f.recordBytes(num)
		if err != nil {
			bad("record %d: %v", num, err)
			continue
		}
		r, err := parseRecord(b, num, f.clusters)
		used, berr := f.getBit(bm, int64(num))
		if berr != nil {
			bad("record %d bitmap: %v", num, berr)
		}
		if errors.Is(err, errRecordFree) {
			if used && num >= 24 {
				bad("record %d is marked in use in $MFT's bitmap but is free", num)
			}
			continue
		}
		if err != nil {
			bad("record %d: %v", num, err)
			continue
		}
		if !used {
			bad("record %d is in use but free in $MFT's bitmap", num)
		}
		if n, _ := r.used(); n > int(f.recSize) {
			bad("record %d uses %d bytes", num, n)
		}
		for _, a := range r.attrs {
			if !a.resident {
				claim(num, a)
			}
		}
		if r.base != 0 {
			continue
		}
		if r, err = f.record(num); err != nil {
			bad("record %d: %v", num, err)
			continue
		}
		recs[num] = r
		var size int64
		if a := r.find(atData, nil); a != nil && r.flags&recordDirectory == 0 {
			size = a.valueSize()
		}
		for _, a := range r.findAll(atFileName) {
			v := a.value
			if len(v) < fnName || len(v) < fnName+2*int(v[fnNameLen]) {
				bad("record %d: bad $FILE_NAME", num)
				continue
			}
			p, _ := splitRef(le.Uint64(v[fnParent:]))
			names[num] = append(names[num], fname{p, utf16String(unitsOf(v[fnName : fnName+2*int(v[fnNameLen])])), v[fnNameType], size})
		}
	}
	// $Bitmap against the clusters mapped.
	cb, err := f.sysData(recBitmap)
	if err != nil {
		return append(probs, err.Error())
	}
	bmap := make([]byte, (f.clusters+7)/8)
	if err := f.valueRead(cb, 0, bmap); err != nil {
		return append(probs, err.Error())
	}
	for c := int64(0); c < f.clusters; c++ {
		set := bmap[c/8]&(1<<(c%8)) != 0
		if set != (owner[c] != 0) {
			bad("cluster %d: $Bitmap says used=%v, mapped by record %d", c, set, owner[c]-1)
		}
	}
	// Directories.
	seen := map[string]bool{}
	for num, r := range recs {
		if r.flags&recordDirectory == 0 {
			continue
		}
		x, err := f.openDir(num)
		if err != nil {
			bad("directory %d: %v", num, err)
			continue
		}
		var prev []uint16
		leafDepth := -1
		reached := map[int64]bool{}
		var walk func(n *node, depth int)
		walk = func(n *node, depth int) {
			if depth > maxIndexDepth {
				bad("directory %d: index too deep", num)
				return
			}
			if !n.large && leafDepth < 0 {
				leafDepth = depth
			} else if !n.large && leafDepth != depth {
				bad("directory %d: leaf %d at depth %d, another at %d", num, n.vcn, depth, leafDepth)
			}
			if n.vcn >= 0 && len(n.ents) == 0 {
				bad("directory %d: empty index block %d", num, n.vcn)
			}
			visit := func(vcn int64) {
				if reached[vcn] {
					bad("directory %d: block %d reached twice", num, vcn)
					return
				}
				reached[vcn] = true
				c, err := x.block(vcn)
				if err != nil {
					bad("directory %d: %v", num, err)
					return
				}
				walk(c, depth+1)
			}
			for i := range n.ents {
				e := &n.ents[i]
				if n.large {
					visit(e.child)
				}
				name := e.name()
				if prev != nil && f.upcase.collateNames(prev, name) >= 0 {
					bad("directory %d: %q after %q", num, utf16String(name), utf16String(prev))
				}
				prev = name
				ref, seq := splitRef(e.ref())
				tr, ok := recs[ref]
				if !ok {
					bad("directory %d: %q points to record %d, not in use", num, utf16String(name), ref)
					continue
				}
				if tr.seq != seq {
					bad("directory %d: %q points to record %d seq %d, it has %d", num, utf16String(name), ref, seq, tr.seq)
				}
				found := false
				for _, fn := range names[ref] {
					if fn.parent == num && fn.name == utf16String(name) && fn.ns == e.ns() {
						found = true
						k := e.key()
						if ref >= firstUser && tr.flags&recordDirectory == 0 && int64(le.Uint64(k[fnDataSize:])) != fn.size {
							bad("directory %d: %q says size %d, the file has %d", num, fn.name, le.Uint64(k[fnDataSize:]), fn.size)
						}
					}
				}
				if !found {
					bad("directory %d: %q points to record %d, which has no such name", num, utf16String(name), ref)
				}
				seen[fmt.Sprint(ref, "/", num, "/", utf16String(name))] = true
			}
			if n.large {
				visit(n.end)
			}
		}
		walk(x.top, 0)
		if alloc, ibm := x.allocAttr(), x.bitmapAttr(); alloc != nil && ibm != nil {
			for i := int64(0); i < ibm.valueSize()*8; i++ {
				used, _ := f.getBit(ibm, i)
				vcn := i * x.bsize / x.vcnUnit
				if i*x.bsize >= alloc.size {
					if used {
						bad("directory %d: block %d marked past $INDEX_ALLOCATION", num, i)
					}
					continue
				}
				if used != reached[vcn] {
					bad("directory %d: block VCN %d marked %v, reached %v", num, vcn, used, reached[vcn])
				}
			}
		}
	}
	for num, fns := range names {
		for _, fn := range fns {
			if !seen[fmt.Sprint(num, "/", fn.parent, "/", fn.name)] && num != recRoot {
				bad("record %d: name %q in directory %d is not in its index", num, fn.name, fn.parent)
			}
		}
	}
	if w, err := f.checkMirror(); err != nil || len(w) > 0 {
		bad("mirror: %v %v", w, err)
	}
	return probs
}
