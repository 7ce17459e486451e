package runs

import (
	"container/list"
	"sync"
)

// Cache is a small LRU cache safe for concurrent use. Formats keep grain
// tables, bitmaps and decoded grains in it so memory stays bounded whatever
// the image size.
type Cache[K comparable, V any] struct {
	mu  sync.Mutex
	max int
	m   map[K]*list.Element
	l   list.List
}

type entry[K comparable, V any] struct {
	k K
	v V
}

// NewCache returns a cache of at most max entries (at least one).
func NewCache[K comparable, V any](n int) *Cache[K, V] {
	return &Cache[K, V]{max: max(n, 1), m: make(map[K]*list.Element)}
}

// Get returns the value cached for k.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.l.MoveToFront(e)
		return e.Value.(*entry[K, V]).v, true
	}
	var zero V
	return zero, false
}

// Put caches v for k, evicting the least recently used entry when full.
func (c *Cache[K, V]) Put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		e.Value.(*entry[K, V]).v = v
		c.l.MoveToFront(e)
		return
	}
	c.m[k] = c.l.PushFront(&entry[K, V]{k, v})
	for c.l.Len() > c.max {
		last := c.l.Back()
		c.l.Remove(last)
		delete(c.m, last.Value.(*entry[K, V]).k)
	}
}
