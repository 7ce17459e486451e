package qcow2

import (
	"container/list"
	"sync"
)

// tableCache keeps metadata read from an image (L2 tables, chunks of the L1
// table) and decompressed clusters, least recently used out first, within a
// fixed byte budget whatever the image size: a 64 TiB image costs the same
// memory as a 1 GiB one, it only misses more.
//
// Cached slices are never modified after they are stored, so readers use
// them without holding the lock; eviction only drops the cache's reference.
// Concurrent misses on the same key load it once.
type tableCache struct {
	mu      sync.Mutex
	budget  int64 // bytes; at least one entry is always kept
	used    int64
	m       map[int64]*list.Element
	lru     list.List // of *cacheEntry, most recent first
	loading map[int64]*pendingLoad
}

type cacheEntry struct {
	key int64
	b   []byte
}

type pendingLoad struct {
	done chan struct{}
	b    []byte
	err  error
}

func newTableCache(budget int64) *tableCache {
	return &tableCache{budget: budget, m: map[int64]*list.Element{}, loading: map[int64]*pendingLoad{}}
}

// get returns the bytes cached for key, calling load on a miss. Errors are
// not cached: a later call retries.
func (c *tableCache) get(key int64, load func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.m[key]; ok {
		c.lru.MoveToFront(e)
		b := e.Value.(*cacheEntry).b
		c.mu.Unlock()
		return b, nil
	}
	if p, ok := c.loading[key]; ok {
		c.mu.Unlock()
		<-p.done
		return p.b, p.err
	}
	p := &pendingLoad{done: make(chan struct{})}
	c.loading[key] = p
	c.mu.Unlock()

	p.b, p.err = load()

	c.mu.Lock()
	delete(c.loading, key)
	if p.err == nil {
		c.addLocked(key, p.b)
	}
	c.mu.Unlock()
	close(p.done)
	return p.b, p.err
}

func (c *tableCache) addLocked(key int64, b []byte) {
	if e, ok := c.m[key]; ok {
		c.used -= int64(len(e.Value.(*cacheEntry).b))
		c.lru.Remove(e)
	}
	c.m[key] = c.lru.PushFront(&cacheEntry{key: key, b: b})
	c.used += int64(len(b))
	for c.used > c.budget && c.lru.Len() > 1 {
		last := c.lru.Back()
		ce := last.Value.(*cacheEntry)
		c.lru.Remove(last)
		delete(c.m, ce.key)
		c.used -= int64(len(ce.b))
	}
}

// invalidate drops key, for writers that changed the table on disk.
func (c *tableCache) invalidate(key int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		c.used -= int64(len(e.Value.(*cacheEntry).b))
		c.lru.Remove(e)
		delete(c.m, key)
	}
}

// reset drops everything.
func (c *tableCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = map[int64]*list.Element{}
	c.lru.Init()
	c.used = 0
}

// size reports the bytes held, for tests.
func (c *tableCache) size() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.used
}
