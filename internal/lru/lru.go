// Package lru is a small generic cache bounded by the total cost of its
// values, safe for concurrent use, shared by the filesystem readers.
package lru

import (
	"container/list"
	"sync"
)

// Cache is a cache bounded by the total cost of its values, safe for
// concurrent use.
type Cache[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	used  int
	cost  func(V) int
	ll    *list.List
	items map[K]*list.Element
}

type lruItem[K comparable, V any] struct {
	k    K
	v    V
	cost int
}

// New returns a cache holding values of total cost at most max.
func New[K comparable, V any](max int, cost func(V) int) *Cache[K, V] {
	return &Cache[K, V]{max: max, cost: cost, ll: list.New(), items: map[K]*list.Element{}}
}

// Get returns the value of k and marks it recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruItem[K, V]).v, true
	}
	var zero V
	return zero, false
}

// Add inserts v; a value costing more than the whole cache is not kept.
func (c *Cache[K, V]) Add(k K, v V) {
	cost := c.cost(v)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		it := e.Value.(*lruItem[K, V])
		c.used -= it.cost
		it.v, it.cost = v, cost
		c.used += cost
		c.ll.MoveToFront(e)
	} else {
		if cost > c.max {
			return
		}
		c.items[k] = c.ll.PushFront(&lruItem[K, V]{k: k, v: v, cost: cost})
		c.used += cost
	}
	for c.used > c.max && c.ll.Len() > 0 {
		e := c.ll.Back()
		it := e.Value.(*lruItem[K, V])
		c.ll.Remove(e)
		delete(c.items, it.k)
		c.used -= it.cost
	}
}

// Purge empties the cache.
func (c *Cache[K, V]) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	clear(c.items)
	c.used = 0
}
