package extwrite

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestRefusedTargets: directories and files the writer must not touch,
// marked with debugfs (set_inode_field) as the kernel would have them:
// an encrypted directory, an immutable directory, immutable and
// append-only files. Nothing is staged for them.
func TestRefusedTargets(t *testing.T) {
	img := mkfsImage(t, "mkfs.ext4", []string{"-O", "encrypt"}, 32, map[string]string{
		"enc/x": "", "imm/x": "", "files/immutable": "i", "files/append": "a", "files/plain": "p",
	})
	set := func(path, flags string) {
		t.Helper()
		if out, err := exec.Command("debugfs", "-w", "-R", "set_inode_field "+path+" flags "+flags, img).CombinedOutput(); err != nil {
			t.Fatalf("debugfs: %v\n%s", err, out)
		}
	}
	set("/enc", "0x80800") // encrypted (with extents)
	set("/imm", "0x80010") // immutable
	set("/files/immutable", "0x80010")
	set("/files/append", "0x80020")
	f, _ := openImage(t, img)
	for _, tc := range []struct {
		name string
		op   func() error
		text string
	}{
		{"create in encrypted", func() error {
			d, _ := lookupPath(f, "/enc")
			_, err := f.Create(d, "new", Attr{}, content(nil))
			return err
		}, "encrypted"},
		{"lookup in encrypted", func() error { _, err := lookupPath(f, "/enc/x"); return err }, "encrypted"},
		{"mkdir in immutable", func() error {
			d, _ := lookupPath(f, "/imm")
			_, err := f.Mkdir(d, "new", Attr{})
			return err
		}, "immutable"},
		{"replace immutable", func() error {
			ino, _ := lookupPath(f, "/files/immutable")
			return f.Replace(ino, content([]byte("x")), ReplaceAttr{})
		}, "immutable"},
		{"replace append-only", func() error {
			ino, _ := lookupPath(f, "/files/append")
			return f.Replace(ino, content([]byte("x")), ReplaceAttr{})
		}, "append-only"},
		{"replace a directory", func() error {
			ino, _ := lookupPath(f, "/files")
			return f.Replace(ino, content([]byte("x")), ReplaceAttr{})
		}, "not a regular file"},
		{"bad name", func() error { _, err := f.Create(RootIno, "a/b", Attr{}, content(nil)); return err }, "'/'"},
		{"exists", func() error { _, err := f.Create(RootIno, "files", Attr{}, content(nil)); return err }, "exists"},
	} {
		err := tc.op()
		if err == nil || !strings.Contains(err.Error(), tc.text) || !(errors.Is(err, ErrRefused) || errors.Is(err, ErrExist)) {
			t.Errorf("%s: %v, want a refusal mentioning %q", tc.name, err, tc.text)
		}
	}
	if len(f.st.mod) != 0 || len(f.st.data) != 0 || len(f.Events()) != 0 {
		t.Errorf("refused operations staged %d blocks, %d data runs, %d events", len(f.st.mod), len(f.st.data), len(f.Events()))
	}
	// The plain file next to them can be replaced.
	ino, _ := lookupPath(f, "/files/plain")
	if err := f.Replace(ino, content([]byte("replaced")), ReplaceAttr{}); err != nil {
		t.Fatal(err)
	}
	apply(t, f, img)
	// The crafted encrypted directory has no encryption context: e2fsck
	// would complain about that, not about the writer.
	set("/enc", "0x80000")
	fsck(t, img, "after the refusals")
	if got := string(debugfsCat(t, img, "/files/plain")); got != "replaced" {
		t.Errorf("plain file: %q", got)
	}
}
