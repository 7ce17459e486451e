package ntfswrite

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// splitAlloc splits the $INDEX_ALLOCATION $I30 of directory p (which
// has an attribute list) in two extents in the record that holds it, as
// a directory whose run list outgrew its record has it, adds the second
// one to the list, and writes the records.
func splitAlloc(t *testing.T, img, p string) {
	t.Helper()
	f := openImage(t, img)
	dir, err := lookupPath(f, p)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := f.record(dir)
	x, err := f.openDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := x.allocAttr()
	if r.list == nil || a == nil {
		t.Fatalf("%s: want an attribute list and an index allocation", p)
	}
	e := a.home
	per := x.bsize / f.clusterSize
	k := (a.highVCN + 1) / 2 / per * per
	var lo, hi []run
	for _, x := range a.runs {
		switch {
		case x.VCN+x.N <= k:
			lo = append(lo, x)
		case x.VCN >= k:
			hi = append(hi, x)
		default:
			d := k - x.VCN
			lo = append(lo, run{VCN: x.VCN, LCN: x.LCN, N: d})
			hi = append(hi, run{VCN: k, LCN: x.LCN + d, N: x.N - d})
		}
	}
	b := &rattr{typ: atIndexAllocation, name: nameI30, lowVCN: k, highVCN: a.highVCN, runs: hi}
	a.runs, a.highVCN = lo, k-1
	a.changed()
	e.add(b)
	// The new extent's list entry, after the first one's.
	list := r.list
	data := make([]byte, list.valueSize())
	if err := f.valueRead(list, 0, data); err != nil {
		t.Fatal(err)
	}
	ent := make([]byte, 40)
	le.PutUint32(ent[0:], atIndexAllocation)
	le.PutUint16(ent[4:], 40)
	ent[6], ent[7] = 4, 26
	le.PutUint64(ent[8:], uint64(k))
	le.PutUint64(ent[16:], mref(e.num, e.seq))
	le.PutUint16(ent[24:], b.instance)
	copy(ent[26:], utf16Bytes(nameI30))
	var out []byte
	for pos := 0; pos < len(data); {
		l := int(le.Uint16(data[pos+4:]))
		out = append(out, data[pos:pos+l]...)
		if le.Uint32(data[pos:]) == atIndexAllocation {
			out = append(out, ent...)
		}
		pos += l
	}
	if list.resident {
		list.value = out
		list.changed()
	} else {
		if err := f.growAttr(list, int64(len(out)), dataZone); err != nil {
			t.Fatal(err)
		}
		if err := f.valueWrite(list, 0, out); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.writeRecords(); err != nil {
		t.Fatal(err)
	}
	if err := writeChanges(img, f.st.changes(f.clusterSize)); err != nil {
		t.Fatal(err)
	}
}

// TestSplitIndexAllocation: a directory whose index allocation is split
// over extents is read through all of them, and names go into its
// existing blocks; one that would need a new block is refused.
func TestSplitIndexAllocation(t *testing.T) {
	fx := getFixture(t, layouts[1])
	img := copyImage(t, fx.img)
	splitAlloc(t, img, "dirs/d600")
	checkImage(t, img)
	f := openImage(t, img)
	dir, err := lookupPath(f, "dirs/d600")
	if err != nil {
		t.Fatal(err)
	}
	x, _ := f.openDir(dir)
	if x.splitRuns == nil {
		t.Fatal("the allocation is not split")
	}
	for i := range 600 {
		if _, err := f.Lookup(dir, fixtureName(i)); err != nil {
			t.Fatalf("%s: %v", fixtureName(i), err)
		}
	}
	// Short names, spread over the directory: they fit in the leaves.
	created := 0
	for i := 0; i < 600; i += 60 {
		name := fixtureName(i) + "-x"
		if _, err := f.Create(dir, name, Attr{}, content([]byte(name))); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		created++
	}
	apply(t, f, img)
	got := checkImage(t, img)
	for i := 0; i < 600; i += 60 {
		if e := got.Get("dirs/d600/" + fixtureName(i) + "-x"); e == nil {
			t.Errorf("%s-x missing", fixtureName(i))
		}
	}
	// Many long names: some leaf splits, and a new block is refused.
	f = openImage(t, img)
	var rerr error
	for i := 0; i < 400 && rerr == nil; i++ {
		_, rerr = f.Create(dir, fmt.Sprintf("%s-%03d", strings.Repeat("Z", 200), i), Attr{}, content(nil))
	}
	if !errors.Is(rerr, ErrRefused) || !strings.Contains(rerr.Error(), "split over several MFT records") {
		t.Errorf("%v, want refused: split", rerr)
	}
}
