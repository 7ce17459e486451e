package mount

import (
	"io/fs"
	"slices"
	"sync"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// Directory prefetch. A walk of a cold tree (find, du, tar) is a chain of
// small reads, each waiting for the disk: the directory's blocks, then the
// inodes of its entries. When a directory is listed, its subdirectories are
// the likeliest to be listed next, so a few workers list them ahead of time
// and stat their entries, which brings the blocks into the filesystem's
// cache and keeps the listing for the open that comes. The reads then
// overlap instead of queueing behind each other. Everything here is bounded:
// the queue, the workers and the listings kept; a listing nobody asks for
// ages out, and work that does not fit is dropped, never waited for. The
// queue is a stack: a walk goes depth first, so the directories listed last
// are the ones it reaches next.

const (
	prefetchWorkers = 4
	prefetchQueue   = 1024 // directories waiting for a worker
	prefetchKept    = 1024 // listings done and not yet taken
	prefetchStats   = 4096 // entries of one directory stat'ed ahead
)

// prefetchEntries bounds the entries of the listings kept (a variable for
// tests).
var prefetchEntries = 1 << 18

// prefetcher is the worker pool of one mount.
type prefetcher struct {
	mu     sync.Mutex
	cond   sync.Cond
	jobs   []prefetchJob // a stack
	closed bool
}

type prefetchJob struct {
	g   *guestFS
	ino uint64
	e   *pfEntry
}

// pfEntry is one directory's prefetch: queued, running (ready open) or done.
type pfEntry struct {
	started bool
	ready   chan struct{} // closed when ents/err are set
	ents    []fsys.DirEntry
	stats   []*fsys.Stat // of ents, nil where not stat'ed or failed
	err     error
	// kept: the listing counts in pfCache.entries (done, not taken).
	// notKept: too big to keep; the open lists the directory itself.
	kept, notKept bool
}

// pfCache is a volume's prefetched listings, by guest inode.
type pfCache struct {
	mu      sync.Mutex
	m       map[uint64]*pfEntry
	kept    []keptListing // done, oldest first, for ageing out
	entries int           // in the kept listings not taken yet
}

type keptListing struct {
	ino uint64
	e   *pfEntry
}

func newPrefetcher() *prefetcher {
	p := &prefetcher{}
	p.cond.L = &p.mu
	for range prefetchWorkers {
		go p.work()
	}
	return p
}

func (p *prefetcher) close() {
	p.mu.Lock()
	p.closed = true
	p.jobs = nil
	p.mu.Unlock()
	p.cond.Broadcast()
}

// push queues jobs, the last on top. When the queue is full the oldest
// jobs, the least likely to be wanted soon, are dropped and returned.
func (p *prefetcher) push(jobs []prefetchJob) (dropped []prefetchJob) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return jobs
	}
	p.jobs = append(p.jobs, jobs...)
	if n := len(p.jobs) - prefetchQueue; n > 0 {
		dropped = slices.Clone(p.jobs[:n])
		p.jobs = append(p.jobs[:0], p.jobs[n:]...)
	}
	// One wakeup per idle worker at most; each costs an IPI on a VM.
	if len(jobs) == 1 {
		p.cond.Signal()
	} else {
		p.cond.Broadcast()
	}
	return dropped
}

func (p *prefetcher) work() {
	for {
		p.mu.Lock()
		for len(p.jobs) == 0 && !p.closed {
			p.cond.Wait()
		}
		if p.closed {
			p.mu.Unlock()
			return
		}
		j := p.jobs[len(p.jobs)-1]
		p.jobs = p.jobs[:len(p.jobs)-1]
		p.mu.Unlock()
		j.g.runPrefetch(j.ino, j.e)
	}
}

// prefetch queues the listing of the directories among ents.
func (g *guestFS) prefetch(ents []fsys.DirEntry) {
	p := g.srv.pf
	if p == nil {
		return
	}
	var jobs []prefetchJob
	c := &g.pf
	c.mu.Lock()
	if c.m == nil {
		c.m = map[uint64]*pfEntry{}
	}
	// Backwards, so the first subdirectory ends on top of the stack.
	for i := len(ents) - 1; i >= 0; i-- {
		e := ents[i]
		if e.Type&fs.ModeDir == 0 || c.m[e.Ino] != nil || len(c.m) >= prefetchQueue+prefetchKept {
			continue
		}
		pe := &pfEntry{ready: make(chan struct{})}
		c.m[e.Ino] = pe
		jobs = append(jobs, prefetchJob{g: g, ino: e.Ino, e: pe})
	}
	c.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	for _, d := range p.push(jobs) {
		d.g.unqueue(d.ino, d.e)
	}
}

// unqueue forgets a prefetch that was dropped before it started.
func (g *guestFS) unqueue(ino uint64, pe *pfEntry) {
	c := &g.pf
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[ino]; e == pe && !pe.started {
		delete(c.m, ino)
	}
}

// runPrefetch lists a directory and stats its entries, unless an open took
// the directory over first.
func (g *guestFS) runPrefetch(ino uint64, pe *pfEntry) {
	c := &g.pf
	c.mu.Lock()
	if c.m[ino] != pe {
		c.mu.Unlock()
		return
	}
	pe.started = true
	c.mu.Unlock()

	ents, err := g.fs.ReadDir(ino)
	stats := make([]*fsys.Stat, min(len(ents), prefetchStats))
	for i := range stats {
		// A failure is left for the open to meet and report.
		stats[i], _ = g.fs.Stat(ents[i].Ino)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(pe.ready)
	if len(ents) > prefetchEntries {
		// The blocks are in the filesystem's cache now; the listing
		// itself would take too much memory to hold.
		pe.notKept = true
		delete(c.m, ino)
		return
	}
	pe.ents, pe.stats, pe.err = ents, stats, err
	if c.m[ino] != pe {
		return // taken already
	}
	pe.kept = true
	c.entries += len(ents)
	c.kept = append(c.kept, keptListing{ino, pe})
	for len(c.kept) > prefetchKept || c.entries > prefetchEntries {
		old := c.kept[0]
		c.kept = c.kept[1:]
		if old.e.kept {
			old.e.kept = false
			c.entries -= len(old.e.ents)
			if c.m[old.ino] == old.e {
				delete(c.m, old.ino)
			}
		}
	}
}

// readDir lists a directory, from its prefetch when there is one, with the
// stats the prefetch made (stats may be shorter than the entries or nil). A
// prefetch still queued is taken over (listed here, now); one running is
// waited for, since it is already reading what this would read.
func (g *guestFS) readDir(ino uint64) (ents []fsys.DirEntry, stats []*fsys.Stat, err error) {
	c := &g.pf
	c.mu.Lock()
	pe := c.m[ino]
	started := pe != nil && pe.started
	if pe != nil {
		delete(c.m, ino)
	}
	c.mu.Unlock()
	if started {
		<-pe.ready
		c.mu.Lock()
		if pe.kept {
			pe.kept = false
			c.entries -= len(pe.ents)
		}
		notKept := pe.notKept
		c.mu.Unlock()
		if !notKept {
			return pe.ents, pe.stats, pe.err
		}
	}
	ents, err = g.fs.ReadDir(ino)
	return ents, nil, err
}
