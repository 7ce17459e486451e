package ntfs

import (
	"container/list"
	"sync"
)

// lru is a cache bounded by the total cost of its values, safe for
// concurrent use.
type lru[K comparable, V any] struct {
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

func newLRU[K comparable, V any](max int, cost func(V) int) *lru[K, V] {
	return &lru[K, V]{max: max, cost: cost, ll: list.New(), items: map[K]*list.Element{}}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruItem[K, V]).v, true
	}
	var zero V
	return zero, false
}

// add inserts v; a value costing more than the whole cache is not kept.
func (c *lru[K, V]) add(k K, v V) {
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

func (c *lru[K, V]) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	clear(c.items)
	c.used = 0
}
