package ntfswrite

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/testimages"
)

// depth is the number of levels of directory num's index.
func depth(t *testing.T, f *FS, num uint64) int {
	t.Helper()
	x, err := f.openDir(num)
	if err != nil {
		t.Fatal(err)
	}
	d, n := 1, x.top
	for n.large {
		c, err := x.block(n.end)
		if err != nil {
			t.Fatal(err)
		}
		n, d = c, d+1
	}
	return d
}

// TestDeepIndex fills a new directory with long names, over several
// transactions, until its index has four levels: index blocks split at
// every level and the root is pushed down again and again.
func TestDeepIndex(t *testing.T) {
	img := mkntfs(t, ntfsLayout{"c4k", 96, 512, 4096}, nil)
	f := openImage(t, img)
	if _, err := f.Mkdir(RootRecord, "deep", Attr{}); err != nil {
		t.Fatal(err)
	}
	apply(t, f, img)
	want := map[string][]byte{}
	for step := range 4 {
		f := openImage(t, img)
		dir, err := f.Lookup(RootRecord, "deep")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 1200 {
			// Interleaved keys: each transaction inserts between the
			// earlier ones.
			name := fmt.Sprintf("%04d-%d-%s", i, step, strings.Repeat("ñ", 200))
			b := []byte(name[:10])
			if _, err := f.Create(dir, name, Attr{}, content(b)); err != nil {
				t.Fatalf("step %d, %d: %v", step, i, err)
			}
			want[name] = b
		}
		apply(t, f, img)
		for _, p := range checkStructure(img) {
			t.Errorf("step %d: %s", step, p)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	f = openImage(t, img)
	dir, _ := f.Lookup(RootRecord, "deep")
	if d := depth(t, f, dir); d < 4 {
		t.Errorf("index depth %d, want at least 4", d)
	}
	got := checkImage(t, img)
	n := 0
	for _, e := range got.Entries {
		if name, ok := strings.CutPrefix(e.Path, "deep/"); ok {
			n++
			if b, ok := want[name]; !ok || e.Size != int64(len(b)) {
				t.Errorf("%s: size %d, want %d (%v)", e.Path, e.Size, len(b), ok)
			}
		}
	}
	if n != len(want) {
		t.Errorf("ntfs-3g lists %d names in deep/, want %d", n, len(want))
	}
}

// TestReplace replaces files in place: non-resident by resident, resident
// with a named stream by non-resident, and a file with two hard links,
// whose both index entries get its new size.
func TestReplace(t *testing.T) {
	fx := getFixture(t, layouts[1])
	img := copyImage(t, fx.img)
	f := openImage(t, img)
	newData := map[string][]byte{
		"files/large.bin":  []byte("now resident\n"),
		"files/small.txt":  pattern(1<<20+5, 3),
		"files/medium.bin": pattern(70000, 4),
		"files/empty":      pattern(4096, 5),
	}
	var freed int64
	for p, b := range newData {
		num, err := lookupPath(f, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Replace(num, content(b), ReplaceAttr{Mtime: testTime}); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	for _, e := range f.Events() {
		for _, x := range e.Freed {
			freed += x.Len
		}
	}
	if freed == 0 {
		t.Error("no clusters freed")
	}
	apply(t, f, img)
	got := checkImage(t, img)
	newData["files/medium-link.bin"] = newData["files/medium.bin"]
	for p, b := range newData {
		e := got.Get(p)
		sum := sha256.Sum256(b)
		if e == nil || e.SHA256 != hex.EncodeToString(sum[:]) || !e.Mtime.Equal(testTime) {
			t.Errorf("%s: %+v, want %d bytes", p, e, len(b))
		}
	}
	e := got.Get("files/small.txt")
	if v := e.Xattrs["user.stream"]; !strings.Contains(v, "a named stream") {
		t.Errorf("files/small.txt lost its stream: %q", v)
	}
	// The freed clusters are free: a new file can take them.
	f = openImage(t, img)
	if _, err := f.Create(RootRecord, "reuse.bin", Attr{}, content(pattern(3<<20, 9))); err != nil {
		t.Fatal(err)
	}
	apply(t, f, img)
	checkImage(t, img)
}

// TestReplaceRefusals: files whose content is not a plain $DATA in the
// writer's reach are refused, naming why.
func TestReplaceRefusals(t *testing.T) {
	testimages.RequireRoot(t)
	testimages.RequireTools(t, testimages.NTFSTools...)
	x, err := testimages.BuildNTFS(testimages.NTFSVariants[0])
	if err != nil {
		t.Fatal(err)
	}
	f := openImage(t, x.Image)
	for p, want := range map[string]string{
		"x/compressed/text":      "compressed",
		"x/win/symlink-relative": "reparse point",
		"x/win/junction":         "directory",
		"sparse/fragmented":      "attribute list",
		"xattr/many":             "attribute list",
		"x/intx/fifo":            "",
		"$MFT":                   "system file",
		"$Extend/$Quota":         "system file",
	} {
		var num uint64
		var err error
		switch p {
		case "$MFT":
			num = recMFT
		case "$Extend/$Quota":
			num, err = f.Lookup(recExtend, "$Quota")
		default:
			num, err = lookupPath(f, p)
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		err = f.Replace(num, content([]byte("x")), ReplaceAttr{})
		if want == "" {
			// Interix FIFOs are system files with empty data: plain.
			continue
		}
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want refused: %s", p, err, want)
		}
	}
}

// TestNames: the names Windows cannot use are refused, 8.3 names are
// stored once in the Win32 & DOS namespace and others in POSIX's, names
// Windows sees as the same as an existing one are refused.
func TestNames(t *testing.T) {
	img := mkntfs(t, layouts[0], func(mnt string) error {
		for _, n := range []string{"Existing.txt", "README"} {
			if err := os.WriteFile(filepath.Join(mnt, n), nil, 0o644); err != nil {
				return err
			}
		}
		// Windows' pairs of names: a long (Win32) and a short (DOS) one.
		if err := os.Mkdir(filepath.Join(mnt, "Long Directory Name"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(mnt, "Long File Name.txt"), []byte("two names"), 0o644); err != nil {
			return err
		}
		for p, short := range map[string]string{"Long Directory Name": "LONGDI~1", "Long File Name.txt": "LONGFI~1.TXT"} {
			if err := unix.Setxattr(filepath.Join(mnt, p), "system.ntfs_dos_name", []byte(short), 0); err != nil {
				return err
			}
		}
		return nil
	})
	f := openImage(t, img)
	// 8.3 names are not the mount's names, but they are taken.
	if _, err := f.Lookup(RootRecord, "LONGDI~1"); !errors.Is(err, ErrNotExist) {
		t.Errorf("lookup of a DOS name: %v", err)
	}
	long, err := f.Lookup(RootRecord, "Long Directory Name")
	if err != nil {
		t.Fatal(err)
	}
	// Adding to a directory with two names updates both of its entries;
	// replacing a file with two names updates both entries' sizes
	// (checkStructure checks them).
	if _, err := f.Create(long, "inside", Attr{}, content([]byte("in"))); err != nil {
		t.Fatal(err)
	}
	two, err := f.Lookup(RootRecord, "Long File Name.txt")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Replace(two, content(pattern(10000, 1)), ReplaceAttr{}); err != nil {
		t.Fatal(err)
	}
	refused := []string{"longdi~1", "LONGFI~1.TXT", "long file name.TXT", "a:b", "a*b", `a\b`, "a?b", `a"b`, "a<b", "a>b", "a|b", "tab\tname", "trailing.", "trailing ",
		"CON", "con.txt", "Aux", "nul.tar.gz", "COM1", "lpt9.log", strings.Repeat("x", 256), "bad\xffutf8",
		"existing.TXT", "readme", "", ".", ".."}
	for _, n := range refused {
		if _, err := f.Create(RootRecord, n, Attr{}, content(nil)); !errors.Is(err, ErrRefused) {
			t.Errorf("%q: %v, want refused", n, err)
		}
	}
	if _, err := f.Create(RootRecord, "Existing.txt", Attr{}, content(nil)); !errors.Is(err, ErrExist) {
		t.Errorf("existing name: %v", err)
	}
	ok := map[string]uint8{
		"CONFIG.SYS":             nsWin32AndDOS,
		"A":                      nsWin32AndDOS,
		"NTUSER~1.DAT":           nsWin32AndDOS,
		"lower.sys":              nsPOSIX,
		"TOOLONGNAME.SYS":        nsPOSIX,
		"A.TOOL":                 nsPOSIX,
		"space name.txt":         nsPOSIX,
		"CON1":                   nsWin32AndDOS,
		"COM0":                   nsWin32AndDOS,
		strings.Repeat("x", 255): nsPOSIX,
		strings.Repeat("😀", 127): nsPOSIX, // 254 UTF-16 units
		"日本語.txt":                nsPOSIX,
	}
	for n := range ok {
		if _, err := f.Create(RootRecord, n, Attr{}, content([]byte(n))); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	if _, err := f.Create(RootRecord, strings.Repeat("😀", 128), Attr{}, content(nil)); !errors.Is(err, ErrRefused) {
		t.Errorf("256 UTF-16 units: %v", err)
	}
	apply(t, f, img)
	got := checkImage(t, img, "Long File Name.txt")
	f = openImage(t, img)
	x, _ := f.openDir(RootRecord)
	for n, ns := range ok {
		e, _, err := x.lookup(utf16Units(n))
		if err != nil || e == nil {
			t.Errorf("%q: not in the index (%v)", n, err)
			continue
		}
		if e.ns() != ns {
			t.Errorf("%q: namespace %d, want %d", n, e.ns(), ns)
		}
		if g := got.Get(n); g == nil || g.Size != int64(len(n)) {
			t.Errorf("%q: ntfs-3g shows %+v", n, g)
		}
	}
}

// TestNoSpace: a file larger than the free space fails the transaction,
// which then refuses to finish; the image is untouched.
func TestNoSpace(t *testing.T) {
	img := mkntfs(t, ntfsLayout{"c4k", 8, 512, 4096}, nil)
	before, _ := os.ReadFile(img)
	f := openImage(t, img)
	if _, err := f.Create(RootRecord, "fits.bin", Attr{}, content(pattern(100000, 1))); err != nil {
		t.Fatal(err)
	}
	_, err := f.Create(RootRecord, "too-big.bin", Attr{}, content(pattern(9<<20, 1)))
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("%v, want no space", err)
	}
	if err := f.Finish(); err == nil {
		t.Fatal("a failed transaction finished")
	}
	if _, err := f.Changes(); err == nil {
		t.Fatal("a failed transaction has changes")
	}
	if _, err := f.Create(RootRecord, "after.bin", Attr{}, content(nil)); err == nil {
		t.Fatal("a failed transaction goes on")
	}
	after, _ := os.ReadFile(img)
	if !bytes.Equal(before, after) {
		t.Fatal("the image changed")
	}
	// A refusal before anything changed leaves the transaction usable.
	f = openImage(t, img)
	if _, err := f.Create(RootRecord, "a:b", Attr{}, content(nil)); !errors.Is(err, ErrRefused) {
		t.Fatal(err)
	}
	if _, err := f.Create(RootRecord, "ok.bin", Attr{}, content([]byte("ok"))); err != nil {
		t.Fatal(err)
	}
	apply(t, f, img)
	checkImage(t, img)
}

// TestNothingChanged: a transaction that only looks writes nothing, not
// even $LogFile or $Volume.
func TestNothingChanged(t *testing.T) {
	img := mkntfs(t, layouts[0], nil)
	f := openImage(t, img)
	if _, err := f.Lookup(RootRecord, "nothing"); !errors.Is(err, ErrNotExist) {
		t.Fatal(err)
	}
	if chs := apply(t, f, img); len(chs) != 0 {
		t.Errorf("%d changes", len(chs))
	}
}

// TestSecurityIDs: on a volume whose files have security ids (ntfs-3g
// with permissions, as Windows), a new file and a new directory get their
// directory's; on one without, a descriptor of their own as ntfs-3g
// gives.
func TestSecurityIDs(t *testing.T) {
	img := mkntfs(t, layouts[0], nil)
	mnt := t.TempDir()
	umount, err := testimages.FuseMount(mnt, "ntfs-3g", "-o", "no_detach,permissions", img, mnt)
	if err != nil {
		t.Fatal(err)
	}
	err = os.Mkdir(filepath.Join(mnt, "secdir"), 0o750)
	if uerr := umount(); err == nil {
		err = uerr
	}
	if err != nil {
		t.Fatal(err)
	}
	f := openImage(t, img)
	dir, err := f.Lookup(RootRecord, "secdir")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := f.record(dir)
	dsi := d.find(atStandardInformation, nil).value
	if len(dsi) < siSizeV3 || le.Uint32(dsi[siSecurityID:]) == 0 {
		t.Fatalf("the fixture directory has no security id: %x", dsi)
	}
	file, err := f.Create(dir, "file", Attr{}, content([]byte("secure")))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := f.Mkdir(dir, "sub", Attr{})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := f.Create(RootRecord, "plain", Attr{}, content(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{file, sub} {
		r, _ := f.record(n)
		si := r.find(atStandardInformation, nil).value
		if len(si) != siSizeV3 || le.Uint32(si[siSecurityID:]) != le.Uint32(dsi[siSecurityID:]) || r.find(atSecurityDescriptor, nil) != nil {
			t.Errorf("record %d: $STANDARD_INFORMATION %x", n, si)
		}
	}
	r, _ := f.record(plain)
	if si := r.find(atStandardInformation, nil).value; len(si) != siSizeV1 || r.find(atSecurityDescriptor, nil) == nil {
		t.Errorf("plain file: $STANDARD_INFORMATION of %d bytes, descriptor %v", len(si), r.find(atSecurityDescriptor, nil) != nil)
	}
	apply(t, f, img)
	checkImage(t, img)
	// ntfs-3g with permissions reads the descriptors: the new file and
	// directory are accessible as their directory is.
	mnt = t.TempDir()
	umount, err = testimages.FuseMount(mnt, "ntfs-3g", "-o", "ro,no_detach,permissions", img, mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer umount()
	var ds, fs, ss unix.Stat_t
	unix.Stat(filepath.Join(mnt, "secdir"), &ds)
	unix.Stat(filepath.Join(mnt, "secdir", "file"), &fs)
	unix.Stat(filepath.Join(mnt, "secdir", "sub"), &ss)
	if fs.Mode&0o777 != ds.Mode&0o777 || ss.Mode&0o777 != ds.Mode&0o777 || fs.Uid != ds.Uid || fs.Gid != ds.Gid {
		t.Errorf("modes: directory %o %d:%d, file %o %d:%d, sub %o", ds.Mode, ds.Uid, ds.Gid, fs.Mode, fs.Uid, fs.Gid, ss.Mode)
	}
}

// TestReplaceDamagedRuns: a file whose run list points into a system
// file, or at clusters $Bitmap has free, is not replaced (its clusters
// would be freed under the metadata).
func TestReplaceDamagedRuns(t *testing.T) {
	base := mkntfs(t, layouts[0], func(mnt string) error {
		return os.WriteFile(filepath.Join(mnt, "victim"), pattern(20000, 1), 0o644)
	})
	for name, lcn := range map[string]func(f *FS) int64{
		"into $MFT":     func(f *FS) int64 { return f.mftLCN },
		"free clusters": func(f *FS) int64 { return f.clusters - 10 },
	} {
		t.Run(name, func(t *testing.T) {
			img := copyImage(t, base)
			f := openImage(t, img)
			num, err := f.Lookup(RootRecord, "victim")
			if err != nil {
				t.Fatal(err)
			}
			target := lcn(f)
			patchRecord(t, img, num, false, func(r *mrec) {
				d := r.find(atData, nil)
				d.runs = []run{{VCN: 0, LCN: target, N: runsClusters(d.runs)}}
				d.changed()
			})
			f = openImage(t, img)
			err = f.Replace(num, content([]byte("x")), ReplaceAttr{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v, want corrupt", err)
			}
		})
	}
}
