package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/vmmount/vmmount/backup/repo"
)

// A configuration file equal to the latest point's is a hard link to it;
// a changed one is a copy; the digest recorded is always the content's.
func TestConfigFilesLinkedWhenUnchanged(t *testing.T) {
	src := filepath.Join(t.TempDir(), "vmlinuz")
	write := func(s string) {
		if err := os.WriteFile(src, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	save := func(prev *repo.Point) *repo.Point {
		t.Helper()
		dir := t.TempDir()
		o := &configOut{dir: dir, prev: prev}
		if err := o.file("vmlinuz", src); err != nil {
			t.Fatal(err)
		}
		if err := o.bytes("domain.xml", []byte("<domain/>")); err != nil {
			t.Fatal(err)
		}
		for name, sum := range o.c.Files {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
				t.Errorf("%s: recorded digest %s does not match its content", name, sum)
			}
		}
		return &repo.Point{Dir: dir, Manifest: &repo.Manifest{Config: o.c}}
	}
	inode := func(p *repo.Point) uint64 {
		st, err := os.Stat(p.Path("vmlinuz"))
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}

	write("kernel 1")
	p1 := save(nil)
	p2 := save(p1)
	if inode(p1) != inode(p2) {
		t.Error("an unchanged kernel was copied, not linked to the previous point's")
	}
	write("kernel 2")
	p3 := save(p2)
	if inode(p3) == inode(p2) {
		t.Fatal("a changed kernel was linked to the previous point's")
	}
	if b, _ := os.ReadFile(p3.Path("vmlinuz")); string(b) != "kernel 2" {
		t.Errorf("changed kernel saved as %q", b)
	}
	if b, _ := os.ReadFile(p2.Path("vmlinuz")); string(b) != "kernel 1" {
		t.Errorf("the previous point's kernel became %q", b)
	}
}
