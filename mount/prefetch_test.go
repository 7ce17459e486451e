package mount

import (
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// dirsFS has directories 1..n (under root 100), directory d holding
// size(d) files; it counts listings.
type dirsFS struct {
	fsys.FileSystem
	size  func(dir uint64) int
	mu    sync.Mutex
	lists map[uint64]int
}

func (f *dirsFS) ReadDir(dir uint64) ([]fsys.DirEntry, error) {
	f.mu.Lock()
	f.lists[dir]++
	f.mu.Unlock()
	var out []fsys.DirEntry
	for i := range f.size(dir) {
		out = append(out, fsys.DirEntry{Name: fmt.Sprint(i), Ino: 1000 + uint64(i)})
	}
	return out, nil
}

func (f *dirsFS) Stat(ino uint64) (*fsys.Stat, error) { return &fsys.Stat{Ino: ino}, nil }

func (f *dirsFS) listed(dir uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists[dir]
}

// TestPrefetchBounds: prefetched listings are handed to the open once,
// the kept ones stay within the entry budget (oldest dropped), and a
// directory bigger than the budget is not kept but listed again.
func TestPrefetchBounds(t *testing.T) {
	defer func(n int) { prefetchEntries = n }(prefetchEntries)
	prefetchEntries = 25
	sizes := map[uint64]int{1: 10, 2: 10, 3: 10, 4: 30}
	f := &dirsFS{size: func(d uint64) int { return sizes[d] }, lists: map[uint64]int{}}
	srv := &Server{pf: newPrefetcher()}
	defer srv.pf.close()
	g := &guestFS{srv: srv, fs: f}
	var subdirs []fsys.DirEntry
	for d := uint64(1); d <= 4; d++ {
		subdirs = append(subdirs, fsys.DirEntry{Name: fmt.Sprint(d), Ino: d, Type: fs.ModeDir})
	}
	g.prefetch(subdirs)
	deadline := time.Now().Add(10 * time.Second)
	for d := uint64(1); d <= 4; d++ {
		for f.listed(d) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("directory %d never prefetched", d)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Let the last worker finish its bookkeeping.
	for {
		g.pf.mu.Lock()
		busy := false
		for _, e := range g.pf.m {
			select {
			case <-e.ready:
			default:
				busy = true
			}
		}
		n := g.pf.entries
		g.pf.mu.Unlock()
		if !busy {
			if n > prefetchEntries {
				t.Fatalf("%d entries kept, budget %d", n, prefetchEntries)
			}
			break
		}
		time.Sleep(time.Millisecond)
	}
	total := 0
	for d := uint64(1); d <= 4; d++ {
		ents, _, err := g.readDir(d)
		if err != nil || len(ents) != sizes[d] {
			t.Fatalf("dir %d: %d entries, %v", d, len(ents), err)
		}
		total += f.listed(d)
	}
	// 1-3 were prefetched (one of them dropped for the budget and listed
	// again), 4 is too big to keep and was listed again.
	if total != 4+1+1 {
		t.Errorf("%d listings in all, want 6", total)
	}
	if f.listed(4) != 2 {
		t.Errorf("big directory listed %d times, want 2", f.listed(4))
	}
	g.pf.mu.Lock()
	defer g.pf.mu.Unlock()
	if g.pf.entries != 0 || len(g.pf.m) != 0 {
		t.Errorf("after taking all: %d entries counted, %d in the map", g.pf.entries, len(g.pf.m))
	}
}
