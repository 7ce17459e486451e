package ext

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// blockCache holds metadata blocks (inode tables, directories, extent and
// indirect blocks, xattr blocks) under a fixed byte budget, least recently
// used first out. It is split into shards by block number so concurrent
// readers rarely meet on one mutex. File data never goes through it: large
// reads go straight from the image into the caller's buffer.
type blockCache struct {
	shards []cacheShard
	mask   uint64
}

type cacheShard struct {
	mu     sync.Mutex
	budget int // blocks this shard may hold
	m      map[uint64]*list.Element
	lru    list.List // of *cblock, most recent at front
}

// cblock is one cached block. data is never modified once cached.
// verified is a bitmask of checksum kinds (verifyDir, verifyExtent, ...)
// already checked good for it, so a block is checksummed once per kind
// rather than on every use.
type cblock struct {
	blk      uint64
	data     []byte
	verified atomic.Uint32
}

const (
	verifyDir uint32 = 1 << iota
	verifyDx
	verifyExtent
	verifyXattr
)

func newBlockCache(budgetBytes int64, blockSize int) *blockCache {
	nblocks := max(int(budgetBytes/int64(blockSize)), 16)
	nshards := 16
	for nshards > 1 && nblocks/nshards < 8 {
		nshards /= 2
	}
	c := &blockCache{shards: make([]cacheShard, nshards), mask: uint64(nshards - 1)}
	for i := range c.shards {
		c.shards[i].budget = nblocks / nshards
		c.shards[i].m = make(map[uint64]*list.Element)
	}
	return c
}

func (c *blockCache) shard(blk uint64) *cacheShard {
	// Mix the bits so runs of consecutive blocks spread over shards.
	h := blk * 0x9E3779B97F4A7C15
	return &c.shards[(h>>32)&c.mask]
}

func (c *blockCache) get(blk uint64) *cblock {
	s := c.shard(blk)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[blk]; ok {
		s.lru.MoveToFront(e)
		return e.Value.(*cblock)
	}
	return nil
}

// add inserts a block read by the caller and returns the cached copy (an
// earlier one if another reader won the race).
func (c *blockCache) add(b *cblock) *cblock {
	s := c.shard(b.blk)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[b.blk]; ok {
		s.lru.MoveToFront(e)
		return e.Value.(*cblock)
	}
	s.m[b.blk] = s.lru.PushFront(b)
	for s.lru.Len() > s.budget {
		old := s.lru.Back()
		s.lru.Remove(old)
		delete(s.m, old.Value.(*cblock).blk)
	}
	return b
}

func (c *blockCache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.m = make(map[uint64]*list.Element)
		s.lru.Init()
		s.mu.Unlock()
	}
}
