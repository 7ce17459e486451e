package ext

import (
	"container/list"
	"sync"
)

// dirCache holds name indexes of linear (unhashed) directories, so that
// looking up every name of a large linear directory (ext2 without
// dir_index, directories written by mke2fs -d) is not quadratic: the
// directory is scanned once and later lookups are map hits. Bounded by an
// approximate byte budget, least recently used out.
type dirCache struct {
	mu     sync.Mutex
	m      map[uint64]*list.Element
	lru    list.List // of *dirIndex
	bytes  int64
	budget int64
}

type dirIndex struct {
	ino   uint64
	names map[string]uint32 // exact names, or folded ones in casefolded directories
	bytes int64
}

// minIndexedBlocks: smaller directories are scanned, which is as cheap.
const minIndexedBlocks = 2

func newDirCache(budget int64) *dirCache {
	return &dirCache{m: make(map[uint64]*list.Element), budget: budget}
}

func (c *dirCache) get(ino uint64) *dirIndex {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[ino]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*dirIndex)
	}
	return nil
}

// add caches x; dirIndexFor builds none larger than a quarter of the
// budget, so one huge directory cannot flush everything else.
func (c *dirCache) add(x *dirIndex) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[x.ino]; ok {
		return
	}
	c.m[x.ino] = c.lru.PushFront(x)
	c.bytes += x.bytes
	for c.bytes > c.budget {
		old := c.lru.Back()
		c.lru.Remove(old)
		ox := old.Value.(*dirIndex)
		delete(c.m, ox.ino)
		c.bytes -= ox.bytes
	}
}

func (c *dirCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = make(map[uint64]*list.Element)
	c.lru.Init()
	c.bytes = 0
}

// dirIndexFor returns the name index of a linear directory, building it
// with one scan; nil when the directory has a damaged block (lookups then
// scan, and report the damage if the name is not found elsewhere).
func (f *FS) dirIndexFor(d *dir) *dirIndex {
	if x := f.dirs.get(d.n.ino); x != nil {
		return x
	}
	x := &dirIndex{ino: d.n.ino, names: make(map[string]uint32)}
	err := f.scanDir(d, false, func(e dirent) bool {
		key := e.name
		if d.fold && !isDots(e.name) {
			key, _ = fold(e.name)
		}
		if _, dup := x.names[string(key)]; !dup {
			x.names[string(key)] = e.ino // the first match wins, as in a scan
			x.bytes += int64(len(key)) + 48
		}
		return x.bytes <= f.dirs.budget/4
	})
	if err != nil || x.bytes > f.dirs.budget/4 {
		return nil // damaged, or too large to cache: lookups scan
	}
	f.dirs.add(x)
	return x
}
