package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// hostileFS is a guest tree that tries every way out of DEST.
func hostileFS(out string) *memFS {
	m := newMemFS()
	m.file(1, "ok.txt", "fine")
	for _, n := range []string{"", ".", "..", "../escape.txt", "a/b", "/abs", "nul\x00byte", strings.Repeat("x", 256)} {
		m.file(1, n, "hostile name")
	}
	m.file(1, "ctrl\n\x1b[31mred", "control characters are legal in Linux names")
	m.symlink(1, "out-abs", out)
	m.symlink(1, "out-rel", "../../../../../../../.."+out)
	// A symlink, then a directory and a file of the same name: writing
	// into them must never go through the symlink.
	m.symlink(1, "dup", out)
	d := m.dir(1, "dup")
	m.file(d, "pwned", "must not land outside")
	m.symlink(1, "dupf", filepath.Join(out, "victim"))
	m.file(1, "dupf", "must not overwrite the victim")
	// A directory that contains itself, and the same directory twice.
	loop := m.dir(1, "loop")
	m.link(loop, "again", loop)
	m.link(1, "loop-alias", loop)
	m.symlink(1, "empty-target", "")
	return m
}

// outside makes base/dest and base/out (with a victim file) and returns
// a check that nothing but dest changed.
func outside(t *testing.T) (dest, out string, check func()) {
	base := t.TempDir()
	dest, out = filepath.Join(base, "dest"), filepath.Join(base, "out")
	os.Mkdir(dest, 0o755)
	os.Mkdir(out, 0o755)
	os.WriteFile(filepath.Join(out, "victim"), []byte("original"), 0o644)
	return dest, out, func() {
		t.Helper()
		ents, _ := os.ReadDir(base)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"dest", "out"}) {
			t.Errorf("base directory holds %q, want only dest and out", names)
		}
		ents, _ = os.ReadDir(out)
		if len(ents) != 1 || ents[0].Name() != "victim" {
			t.Errorf("out/ holds %v, want only victim", ents)
		}
		if b, _ := os.ReadFile(filepath.Join(out, "victim")); string(b) != "original" {
			t.Errorf("victim outside DEST changed: %q", b)
		}
		if fi, _ := os.Stat(filepath.Join(out, "victim")); fi == nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("victim's mode changed: %v", fi)
		}
	}
}

type errLog struct {
	mu   sync.Mutex
	errs map[string]error
}

func (l *errLog) add(g string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.errs == nil {
		l.errs = map[string]error{}
	}
	l.errs[g] = err
}

func (l *errLog) has(t *testing.T, guest string, target error) {
	t.Helper()
	err, ok := l.errs[guest]
	if !ok {
		t.Errorf("no error reported for %q (have %v)", guest, l.errs)
		return
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("%q: %v, want %v", guest, err, target)
	}
}

func TestHostileNames(t *testing.T) {
	for _, policy := range []Existing{Refuse, Overwrite, Skip} {
		t.Run([]string{"refuse", "overwrite", "skip"}[policy], func(t *testing.T) {
			dest, out, check := outside(t)
			m := hostileFS(out)
			var log errLog
			sum, err := RestoreFiles(context.Background(), dest, m.item("m"), FilesOptions{Existing: policy, Owners: true, OnError: log.add})
			if err != nil {
				t.Fatal(err)
			}
			check()
			for _, n := range []string{"", ".", "..", "../escape.txt", "a/b", "/abs", "nul\x00byte", strings.Repeat("x", 256)} {
				log.has(t, "/m/"+n, ErrBadName)
			}
			log.has(t, "/m/loop/again", fsys.ErrCorrupt)
			log.has(t, "/m/loop-alias", fsys.ErrCorrupt)
			log.has(t, "/m/empty-target", fsys.ErrCorrupt)
			root := filepath.Join(dest, "m")
			for name, want := range map[string]string{"out-abs": out, "out-rel": "../../../../../../../.." + out} {
				if got, err := os.Readlink(filepath.Join(root, name)); err != nil || got != want {
					t.Errorf("%s: %q %v, want the symlink to %q", name, got, err, want)
				}
			}
			if b, err := os.ReadFile(filepath.Join(root, "ctrl\n\x1b[31mred")); err != nil || len(b) == 0 {
				t.Errorf("name with control characters not restored: %v", err)
			}
			switch policy {
			case Refuse:
				log.has(t, "/m/dup", ErrExists)
				log.has(t, "/m/dupf", ErrExists)
			case Overwrite:
				if b, err := os.ReadFile(filepath.Join(root, "dup", "pwned")); err != nil || string(b) != "must not land outside" {
					t.Errorf("dup/pwned: %q %v: the directory should have replaced the symlink", b, err)
				}
				if fi, err := os.Lstat(filepath.Join(root, "dupf")); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("dupf: %v %v: the file should have replaced the symlink", fi, err)
				}
			case Skip:
				if sum.Skipped != 2 {
					t.Errorf("skipped %d, want 2 (dup and dupf)", sum.Skipped)
				}
			}
			t.Logf("%+v", *sum)
			for g, err := range log.errs {
				msg := (&EntryError{Guest: g, Err: err}).Error()
				if strings.ContainsAny(msg, "\x00\n\x1b") {
					t.Errorf("message not escaped: %q", msg)
				}
			}
		})
	}
}

// TestHostileTar: the same tree as a tar stream holds no name that leaves
// the directory it is extracted in.
func TestHostileTar(t *testing.T) {
	_, out, _ := outside(t)
	m := hostileFS(out)
	var buf bytes.Buffer
	var log errLog
	if _, err := WriteTar(context.Background(), &buf, m.item("m"), TarOptions{OnError: log.add}); err != nil {
		t.Fatal(err)
	}
	log.has(t, "/m/../escape.txt", ErrBadName)
	log.has(t, "/m/loop/again", fsys.ErrCorrupt)
	tr := tar.NewReader(&buf)
	names := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names++
		clean := strings.TrimSuffix(h.Name, "/")
		for _, c := range strings.Split(clean, "/") {
			if c == "" || c == "." || c == ".." {
				t.Errorf("tar name %q has component %q", h.Name, c)
			}
		}
		if clean != "m" && !strings.HasPrefix(clean, "m/") {
			t.Errorf("tar name %q outside m/", h.Name)
		}
	}
	if names < 5 {
		t.Errorf("only %d entries", names)
	}
}

// TestDestWithSymlinks: a DEST reached through a symlink is used as
// resolved once; symlinks inside DEST where the restore writes are never
// followed.
func TestDestWithSymlinks(t *testing.T) {
	dest, out, check := outside(t)
	m := newMemFS()
	d := m.dir(1, "etc")
	m.file(d, "passwd", "guest passwd")

	// DEST/etc -> out: the item named etc is refused, skipped, or the
	// symlink replaced by a directory; out/ never receives passwd.
	os.Symlink(out, filepath.Join(dest, "etc"))
	items := []Item{{Guest: "/p1/etc", FS: m, Ino: d, Rel: []string{"etc"}}}
	_, err := RestoreFiles(context.Background(), dest, items, FilesOptions{})
	if !errors.Is(err, ErrExists) {
		t.Errorf("refuse: %v, want ErrExists", err)
	}
	sum, err := RestoreFiles(context.Background(), dest, items, FilesOptions{Existing: Skip})
	if err != nil || sum.Skipped != 1 {
		t.Errorf("skip: %+v %v", sum, err)
	}
	check()
	// With --parents the symlink is a directory on the way: an error.
	var log errLog
	items2 := []Item{{Guest: "/p1/etc/passwd", FS: m, Ino: d + 1, Rel: []string{"etc", "passwd"}}}
	if _, err := RestoreFiles(context.Background(), dest, items2, FilesOptions{Existing: Overwrite, OnError: log.add}); err != nil {
		t.Fatal(err)
	}
	log.has(t, "/p1/etc/passwd", nil)
	check()
	if _, err := RestoreFiles(context.Background(), dest, items, FilesOptions{Existing: Overwrite}); err != nil {
		t.Fatal(err)
	}
	check()
	if b, err := os.ReadFile(filepath.Join(dest, "etc", "passwd")); err != nil || string(b) != "guest passwd" {
		t.Errorf("overwrite: etc/passwd %q %v", b, err)
	}

	// DEST itself a symlink to a directory: resolved once, used.
	link := filepath.Join(t.TempDir(), "destlink")
	real := t.TempDir()
	os.Symlink(real, link)
	if _, err := RestoreFiles(context.Background(), link, items, FilesOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(real, "etc", "passwd")); err != nil {
		t.Errorf("through a symlinked DEST: %v", err)
	}
}
