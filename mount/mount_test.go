package mount

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/testimages"
)

// mountTree mounts root at a temporary directory and unmounts it when the
// test ends.
func mountTree(t *testing.T, root *Dir, onError func(string, error)) *Server {
	t.Helper()
	testimages.RequireRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testimages.Missing(t, "no /dev/fuse")
	}
	dir := t.TempDir()
	s, err := Mount(dir, root, Options{OnError: onError})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		s.Wait()
	})
	return s
}

func TestMountTreeEqualsSource(t *testing.T) {
	testimages.RequireRoot(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := testimages.RichTree(src, testimages.TreeOptions{BigDir: 500, LargeSize: 3 << 20}); err != nil {
		t.Fatal(err)
	}
	want, err := testimages.ScanDir(src)
	if err != nil {
		t.Fatal(err)
	}
	disk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	var mu sync.Mutex
	var reported []string
	root := &Dir{Entries: []Entry{
		{"p1", &Volume{Name: "p1", Open: func() (fsys.FileSystem, error) { return testimages.NewHostFS(src) }}},
		{"p2", &Volume{Name: "p2", Open: func() (fsys.FileSystem, error) { return nil, errors.New("bad superblock at byte 1024") }}},
		{".raw", &Dir{Entries: []Entry{{"disk", &RawFile{R: bytes.NewReader(disk), Size: int64(len(disk))}}}}},
		{"domain.xml", &Text{Data: []byte("<domain/>\n")}},
		{"latest", &Symlink{Target: "p1"}},
	}}
	s := mountTree(t, root, func(p string, err error) {
		mu.Lock()
		reported = append(reported, p+": "+err.Error())
		mu.Unlock()
	})

	got, err := testimages.ScanDir(filepath.Join(s.Dir(), "p1"))
	if err != nil {
		t.Fatal(err)
	}
	o := testimages.ExtCompare()
	o.Fields &^= testimages.FieldAtime | testimages.FieldBlocks
	if diffs := testimages.Compare(want, got, o); len(diffs) > 0 {
		t.Errorf("mount differs from source (-want +got):\n%s", strings.Join(diffs, "\n"))
	}

	// The failing volume shows its error and the rest keeps working.
	ents, err := os.ReadDir(filepath.Join(s.Dir(), "p2"))
	if err != nil || len(ents) != 1 || ents[0].Name() != ErrorFileName {
		t.Fatalf("p2: %v %v", ents, err)
	}
	msg, err := os.ReadFile(filepath.Join(s.Dir(), "p2", ErrorFileName))
	if err != nil || !strings.Contains(string(msg), "bad superblock") {
		t.Fatalf("error file: %q %v", msg, err)
	}
	mu.Lock()
	if len(reported) != 1 || !strings.Contains(reported[0], "p2") {
		t.Errorf("reported %q", reported)
	}
	mu.Unlock()

	b, err := os.ReadFile(filepath.Join(s.Dir(), ".raw", "disk"))
	if err != nil || !bytes.Equal(b, disk) {
		t.Fatalf("raw disk: %d bytes, %v", len(b), err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.Dir(), "domain.xml")); string(b) != "<domain/>\n" {
		t.Fatalf("domain.xml: %q", b)
	}
	if tgt, _ := os.Readlink(filepath.Join(s.Dir(), "latest")); tgt != "p1" {
		t.Fatalf("latest -> %q", tgt)
	}
	// Read-only.
	if err := os.WriteFile(filepath.Join(s.Dir(), "p1", "new"), nil, 0o644); err == nil {
		t.Fatal("created a file in a read-only mount")
	}
	if f, err := os.OpenFile(filepath.Join(s.Dir(), "domain.xml"), os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Fatal("opened a file for writing")
	}
}

func TestMountParallelReaders(t *testing.T) {
	testimages.RequireRoot(t)
	src := t.TempDir()
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	for i := range 8 {
		os.WriteFile(filepath.Join(src, "f"+string(rune('0'+i))), data[i:], 0o644)
	}
	s := mountTree(t, &Dir{Entries: []Entry{{"v", &Volume{Name: "v", Open: func() (fsys.FileSystem, error) { return testimages.NewHostFS(src) }}}}}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := os.ReadFile(filepath.Join(s.Dir(), "v", "f"+string(rune('0'+i))))
			if err == nil && !bytes.Equal(b, data[i:]) {
				err = errors.New("content differs")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckMountpoint(t *testing.T) {
	d := t.TempDir()
	if err := CheckMountpoint(d); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "x"), nil, 0o644)
	if err := CheckMountpoint(d); err == nil {
		t.Fatal("non-empty mountpoint accepted")
	}
	if err := CheckMountpoint(filepath.Join(d, "nope")); err == nil {
		t.Fatal("missing mountpoint accepted")
	}
	_ = time.Second
}

// countingFS counts reads of file content.
type countingFS struct {
	fsys.FileSystem
	reads *atomic.Int64
}

type countingFile struct {
	fsys.File
	reads *atomic.Int64
}

func (c countingFS) Open(ino uint64) (fsys.File, error) {
	f, err := c.FileSystem.Open(ino)
	if err != nil {
		return nil, err
	}
	return countingFile{f, c.reads}, nil
}

func (c countingFile) ReadAt(p []byte, off int64) (int, error) {
	c.reads.Add(1)
	return c.File.ReadAt(p, off)
}

// TestMountKeepsPageCache: data read once is served from the kernel's page
// cache afterwards (the tree is immutable), even though opens are not
// forwarded.
func TestMountKeepsPageCache(t *testing.T) {
	testimages.RequireRoot(t)
	src := t.TempDir()
	data := bytes.Repeat([]byte("page cache "), 100000)
	os.WriteFile(filepath.Join(src, "f"), data, 0o644)
	var reads atomic.Int64
	s := mountTree(t, &Dir{Entries: []Entry{{"v", &Volume{Name: "v", Open: func() (fsys.FileSystem, error) {
		h, err := testimages.NewHostFS(src)
		return countingFS{h, &reads}, err
	}}}}}, nil)
	for i := range 3 {
		b, err := os.ReadFile(filepath.Join(s.Dir(), "v", "f"))
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("read %d: %v", i, err)
		}
		if i == 0 && reads.Load() == 0 {
			t.Fatal("first read did not reach the filesystem")
		}
	}
	first := reads.Load()
	for range 3 {
		os.ReadFile(filepath.Join(s.Dir(), "v", "f"))
	}
	if n := reads.Load(); n != first {
		t.Errorf("rereads reached the filesystem %d more times; page cache not kept", n-first)
	}
}

// listCountingFS counts directory listings by inode.
type listCountingFS struct {
	fsys.FileSystem
	mu    *sync.Mutex
	lists map[uint64]int
}

func (c listCountingFS) ReadDir(dir uint64) ([]fsys.DirEntry, error) {
	c.mu.Lock()
	c.lists[dir]++
	c.mu.Unlock()
	return c.FileSystem.ReadDir(dir)
}

// TestMountListsOnce: a walk lists every directory once, whether the
// prefetch or the walk gets there first; a second walk is served by the
// kernel's cache; a directory too big for one reply reads whole in small
// chunks.
func TestMountListsOnce(t *testing.T) {
	testimages.RequireRoot(t)
	src := t.TempDir()
	for _, d := range []string{"a/b/c/d", "a/e", "f", "big", "empty"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	for i := range 3000 {
		os.WriteFile(filepath.Join(src, "big", fmt.Sprintf("a-rather-long-file-name-%05d", i)), nil, 0o644)
	}
	for i := range 40 {
		os.Mkdir(filepath.Join(src, "f", fmt.Sprint(i)), 0o755)
		os.WriteFile(filepath.Join(src, "a", "e", fmt.Sprint(i)), []byte("x"), 0o644)
	}
	os.Symlink("a/b", filepath.Join(src, "link"))
	var mu sync.Mutex
	lists := map[uint64]int{}
	s := mountTree(t, &Dir{Entries: []Entry{{"v", &Volume{Name: "v", Open: func() (fsys.FileSystem, error) {
		h, err := testimages.NewHostFS(src)
		return listCountingFS{h, &mu, lists}, err
	}}}}}, nil)
	walk := func(root string) []string {
		var out []string
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			out = append(out, fmt.Sprintf("%s %v", rel, d.Type()))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := walk(src)
	mnt := filepath.Join(s.Dir(), "v")
	if got := walk(mnt); !slices.Equal(got, want) {
		t.Fatalf("walk of the mount differs: %d entries, want %d", len(got), len(want))
	}
	mu.Lock()
	dirs := len(lists)
	for ino, n := range lists {
		if n != 1 {
			t.Errorf("directory inode %d listed %d times", ino, n)
		}
	}
	snapshot := maps.Clone(lists)
	mu.Unlock()
	if dirs != 49 {
		t.Errorf("%d directories listed, want 49", dirs)
	}
	if got := walk(mnt); !slices.Equal(got, want) {
		t.Fatal("second walk differs")
	}
	mu.Lock()
	if !maps.Equal(lists, snapshot) {
		t.Error("second walk reached the filesystem; the kernel did not keep the listings")
	}
	mu.Unlock()

	f, err := os.Open(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	for {
		ents, err := f.ReadDir(7)
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(names)
	if len(names) != 3000 || len(slices.Compact(slices.Clone(names))) != 3000 || names[0] != "a-rather-long-file-name-00000" {
		t.Errorf("big directory read in chunks: %d names", len(names))
	}
}

// lookupCountingFS counts name lookups.
type lookupCountingFS struct {
	fsys.FileSystem
	n *atomic.Int64
}

func (c lookupCountingFS) Lookup(dir uint64, name string) (uint64, error) {
	c.n.Add(1)
	return c.FileSystem.Lookup(dir, name)
}

// TestMountLearnsStatters: a program not known to stat what it lists gets
// listings without the attributes of files; once it looks a file up after
// such a listing, its listings carry them, and stats need no lookups.
func TestMountLearnsStatters(t *testing.T) {
	testimages.RequireRoot(t)
	src := t.TempDir()
	for _, d := range []string{"d1", "d2"} {
		os.Mkdir(filepath.Join(src, d), 0o755)
		for i := range 20 {
			os.WriteFile(filepath.Join(src, d, fmt.Sprint(i)), []byte("x"), 0o644)
		}
	}
	var lookups atomic.Int64
	s := mountTree(t, &Dir{Entries: []Entry{{"v", &Volume{Name: "v", Open: func() (fsys.FileSystem, error) {
		h, err := testimages.NewHostFS(src)
		return lookupCountingFS{h, &lookups}, err
	}}}}}, nil)
	statAll := func(d string) int64 {
		before := lookups.Load()
		ents, err := os.ReadDir(filepath.Join(s.Dir(), "v", d))
		if err != nil || len(ents) != 20 {
			t.Fatalf("%s: %d entries, %v", d, len(ents), err)
		}
		for _, e := range ents {
			if fi, err := os.Lstat(filepath.Join(s.Dir(), "v", d, e.Name())); err != nil || fi.Size() != 1 {
				t.Fatalf("%s/%s: %v", d, e.Name(), err)
			}
		}
		return lookups.Load() - before
	}
	// Directories always come with attributes: no lookups for d1, d2.
	if _, err := os.ReadDir(filepath.Join(s.Dir(), "v")); err != nil {
		t.Fatal(err)
	}
	if n := statAll("d1"); n != 20 {
		t.Errorf("stats after the first listing cost %d lookups, want 20 (files listed without attributes)", n)
	}
	if n := statAll("d2"); n != 0 {
		t.Errorf("stats after a listing for a known statter cost %d lookups, want 0", n)
	}
}
