package ext

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vmmount/vmmount/fsread/fsys"
)

func variantByName(t *testing.T, name string) variant {
	t.Helper()
	for _, v := range variants {
		if v.name == name {
			return v
		}
	}
	t.Fatalf("no variant %s", name)
	return variant{}
}

// TestCasefold looks names up in a casefolded htree directory by other
// spellings. The image was made by debugfs and indexed by e2fsck -D, whose
// hashes of folded names this reader must reproduce (checked by e2fsck -fn
// at build time).
func TestCasefold(t *testing.T) {
	img, _ := fixture(t, variantByName(t, "ext4-casefold"))
	f := openImage(t, img)
	cf, err := f.Lookup(f.Root(), "cf")
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.openDir(cf)
	if err != nil {
		t.Fatal(err)
	}
	if !d.fold || !f.isIndexed(d) {
		t.Fatalf("cf: casefold %v, indexed %v; want both", d.fold, f.isIndexed(d))
	}
	ents, err := f.ReadDir(cf)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(casefoldNames())+1 {
		t.Errorf("ReadDir: %d entries, want %d", len(ents), len(casefoldNames())+1)
	}
	for _, name := range casefoldNames() {
		want, err := f.Lookup(cf, name)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", name, err)
		}
		nfd := strings.NewReplacer("Ä", "A\u0308", "É", "E\u0301").Replace(name)
		for _, alt := range []string{strings.ToLower(name), strings.ToUpper(name), nfd} {
			got, err := f.Lookup(cf, alt)
			if err != nil || got != want {
				t.Errorf("Lookup(%q) = %d, %v; want %d", alt, got, err, want)
			}
		}
		{
			// The hash path alone must find them (folding as the kernel).
			key, _ := fold([]byte(strings.ToUpper(name)))
			ino, ok, err := f.dxLookup(d, key, func(e dirent) bool { k, _ := fold(e.name); return string(k) == string(key) })
			if err != nil || !ok || ino != want {
				t.Errorf("dxLookup(%q) = %d, %v, %v; want %d by hash", name, ino, ok, err, want)
			}
		}
	}
	if _, err := f.Lookup(cf, "subdir"); err != nil {
		t.Errorf("Lookup(subdir): %v", err)
	}
	if _, err := f.Lookup(cf, "no-such-file.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing name: %v, want ErrNotExist", err)
	}
	// The root is not casefolded.
	if _, err := f.Lookup(f.Root(), "CF"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lookup(root, CF): %v, want ErrNotExist", err)
	}
}

// TestJournalReplay checks that the ext3 crash copy holds files that exist
// only in their journals: invisible without replay, present with it (the
// full comparison with the kernel's replay is in TestAgainstKernel).
func TestJournalReplay(t *testing.T) {
	for _, name := range []string{"ext3-journal"} {
		t.Run(name, func(t *testing.T) {
			img, _ := fixture(t, variantByName(t, name))
			f := openImage(t, img)
			if _, err := f.Lookup(f.Root(), "journal-only"); err != nil {
				t.Errorf("with replay: %v", err)
			}
			replayed := false
			for _, w := range f.Warnings() {
				replayed = replayed || strings.Contains(w, "replayed")
			}
			if !replayed {
				t.Errorf("no replay warning in %q", f.Warnings())
			}
			r, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			st, _ := r.Stat()
			raw, err := Open(r, st.Size(), Options{Name: "raw", NoJournalReplay: true})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Lookup(raw.Root(), "journal-only"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("without replay journal-only/ is there (%v): the fixture's journal holds nothing that matters", err)
			}
		})
	}
}

// TestFSTest runs testing/fstest over the io/fs view of an ext4 fixture.
func TestFSTest(t *testing.T) {
	img, _ := fixture(t, variantByName(t, "ext4"))
	f := openImage(t, img)
	// Subtrees without dangling or escaping symlinks and without names
	// TestFS rejects (backslashes); not the big sparse files, which its
	// byte-by-byte reader tests make slow (their content is compared with
	// the kernel's in TestAgainstKernel).
	for _, dir := range []string{"files", "xattr", "deep"} {
		sub, err := fs.Sub(fsys.NewFS(f), dir)
		if err != nil {
			t.Fatal(err)
		}
		ents, err := fs.ReadDir(sub, ".")
		if err != nil || len(ents) == 0 {
			t.Fatalf("%s: %v entries, %v", dir, len(ents), err)
		}
		var expect []string
		for _, e := range ents {
			expect = append(expect, e.Name())
		}
		if err := fstest.TestFS(sub, expect...); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}
}

// TestJournalDamaged breaks the journal superblock of the crash copy: the
// volume still opens, read as it is, with a warning naming the failure.
func TestJournalDamaged(t *testing.T) {
	img, _ := fixture(t, variantByName(t, "ext3-journal"))
	clean, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := openBytes(clean)
	if err != nil {
		t.Fatal(err)
	}
	jblk := physOf(t, cf, uint64(cf.sb.JournalInum), 0)
	b := bytes.Clone(clean)
	b[int64(jblk)*int64(cf.bs)] ^= 0xff // the jbd2 magic
	f, err := openBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, w := range f.Warnings() {
		warned = warned || strings.Contains(w, "journal replay failed")
	}
	if !warned {
		t.Errorf("warnings %q, want the failed replay named", f.Warnings())
	}
	if _, err := f.Lookup(f.Root(), "journal-only"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("journal-only without a usable journal: %v", err)
	}
	if _, err := f.Lookup(f.Root(), "files"); err != nil {
		t.Errorf("the rest: %v", err)
	}
}
