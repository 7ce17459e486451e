package restore

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzACLText decodes ACL xattr values from a guest: never a panic, and
// what decodes is text of entries that a tar program can read back.
func FuzzACLText(f *testing.F) {
	entry := func(tag, perm uint16, id uint32) []byte {
		var e [8]byte
		binary.LittleEndian.PutUint16(e[0:], tag)
		binary.LittleEndian.PutUint16(e[2:], perm)
		binary.LittleEndian.PutUint32(e[4:], id)
		return e[:]
	}
	acl := binary.LittleEndian.AppendUint32(nil, aclXattrVersion)
	for _, e := range [][]byte{entry(aclUserObj, 6, 0xffffffff), entry(aclUser, 4, 1000), entry(aclGroupObj, 4, 0xffffffff),
		entry(aclGroup, 6, 100), entry(aclMask, 6, 0xffffffff), entry(aclOther, 0, 0xffffffff)} {
		acl = append(acl, e...)
	}
	f.Add(acl)
	f.Add([]byte{2, 0, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 0x40, 0, 7, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := aclText(b)
		if err != nil {
			return
		}
		if n := (len(b) - 4) / 8; n > 0 && strings.Count(s, ",") != n-1 {
			t.Fatalf("%d entries, text %q", n, s)
		}
		if strings.ContainsAny(s, "\n\x00") {
			t.Fatalf("text %q", s)
		}
	})
}

// FuzzRestoreNames restores a guest directory whose entries have the
// fuzzer's names (a symlink, a directory with a file, a file) into a
// directory beside an "outside" one: whatever the names, nothing may
// appear outside DEST, and every refusal is a name check.
func FuzzRestoreNames(f *testing.F) {
	for _, s := range []string{"a\x00b\x00c", "..\x00.\x00x", "../x\x00a/b\x00/", "\x00\x00", "x\x00x\x00x", "ctl\n\x1b\x00ok\x00..."} {
		f.Add(s)
	}
	base := f.TempDir()
	f.Fuzz(func(t *testing.T, names string) {
		parts := strings.SplitN(names, "\x00", 4)
		for len(parts) < 3 {
			parts = append(parts, "x")
		}
		dir, err := os.MkdirTemp(base, "case")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		dest, out := filepath.Join(dir, "dest"), filepath.Join(dir, "out")
		os.Mkdir(out, 0o755)
		m := newMemFS()
		m.symlink(1, parts[0], out)
		d := m.dir(1, parts[1])
		m.file(d, parts[2], "content")
		m.file(1, parts[2], "content")
		for _, policy := range []Existing{Refuse, Overwrite} {
			_, err := RestoreFiles(context.Background(), dest, m.item("m"), FilesOptions{Existing: policy,
				OnError: func(g string, err error) {}})
			if err != nil {
				t.Fatal(err)
			}
			var tb bytes.Buffer
			if _, err := WriteTar(context.Background(), &tb, m.item("m"), TarOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 2 {
			t.Fatalf("%q: %d entries beside dest and out", parts, len(ents))
		}
		if ents, _ := os.ReadDir(out); len(ents) != 0 {
			t.Fatalf("%q: wrote %v outside DEST", parts, ents)
		}
	})
}
