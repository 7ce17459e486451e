package fat

import (
	"errors"
	"fmt"
	"io"

	"github.com/vmmount/vmmount/internal/lru"
)

// Cache bounds: FAT chunks and parsed directory entries.
const (
	fatChunkSize        = 64 << 10
	maxCachedFATChunks  = 64 // 4 MiB of FAT
	maxCachedDirEntries = 1 << 16
	maxDirSize          = 1 << 21 // 65536 entries (spec section 6)
)

// fatTable reads FAT entries through a bounded cache of FAT chunks.
type fatTable struct {
	f      *FS
	chunks *lru.Cache[int64, []byte]
}

func newFATTable(f *FS) *fatTable {
	return &fatTable{f: f, chunks: lru.New[int64, []byte](maxCachedFATChunks, func([]byte) int { return 1 })}
}

func (t *fatTable) purge() { t.chunks.Purge() }

// chunk returns FAT chunk i (bytes [i*fatChunkSize, ...) of the FAT).
func (t *fatTable) chunk(i int64) ([]byte, error) {
	if b, ok := t.chunks.Get(i); ok {
		return b, nil
	}
	g := &t.f.geo
	n := min(int64(fatChunkSize), g.fatSize-i*fatChunkSize)
	if n <= 0 {
		return nil, t.f.corrupt(0, g.fatOff+i*fatChunkSize, "FAT entry past the end of the FAT")
	}
	b := make([]byte, n)
	off := g.fatOff + i*fatChunkSize
	if m, err := t.f.r.ReadAt(b, off); m < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, t.f.corrupt(0, off+int64(m), "FAT past the end of the volume")
		}
		return nil, fmt.Errorf("%s: reading FAT at byte %d: %w", t.f.name, off, err)
	}
	t.chunks.Add(i, b)
	return b, nil
}

// bytesAt reads n (<= 4) bytes of the FAT at byte off, which may straddle
// two chunks (FAT12 entries do).
func (t *fatTable) bytesAt(off int64, n int) (uint32, error) {
	var v uint32
	for i := 0; i < n; i++ {
		o := off + int64(i)
		c, err := t.chunk(o / fatChunkSize)
		if err != nil {
			return 0, err
		}
		v |= uint32(c[o%fatChunkSize]) << (8 * i)
	}
	return v, nil
}

// entry returns FAT entry c, with FAT32's top four bits masked off.
func (t *fatTable) entry(c uint32) (uint32, error) {
	switch t.f.geo.kind {
	case fat12:
		v, err := t.bytesAt(int64(c)+int64(c/2), 2)
		if c&1 != 0 {
			v >>= 4
		}
		return v & 0xFFF, err
	case fat16:
		return t.bytesAt(int64(c)*2, 2)
	default:
		v, err := t.bytesAt(int64(c)*4, 4)
		return v & 0x0FFFFFFF, err
	}
}

// isEOC says whether FAT value v ends a chain; bad is the bad-cluster mark.
func (t *fatTable) classify(v uint32) (eoc, bad bool) {
	switch t.f.geo.kind {
	case fat12:
		return v >= 0xFF8, v == 0xFF7
	case fat16:
		return v >= 0xFFF8, v == 0xFFF7
	default:
		return v >= 0x0FFFFFF8, v == 0x0FFFFFF7
	}
}

// run is a range of consecutive clusters of a chain.
type run struct {
	start uint32 // first cluster
	n     uint32
}

// chain follows the cluster chain from first for at most limit clusters and
// returns it as runs and the number of clusters. ended says the chain
// reached its end-of-chain mark (rather than the limit). A chain longer than
// the volume's cluster count loops. ino names the owner in errors.
func (t *fatTable) chain(ino uint64, first uint32, limit int64) (runs []run, n int64, ended bool, err error) {
	g := &t.f.geo
	c := first
	// Visited clusters, kept once a chain is long: its size follows the
	// chain, which the FAT's bytes in the image bound.
	var seen map[uint32]struct{}
	for {
		if c < 2 || c > g.maxCluster() {
			return runs, n, false, t.f.corrupt(ino, -1, "cluster %d in chain from %d is out of range 2..%d", c, first, g.maxCluster())
		}
		if n >= limit {
			return runs, n, false, nil
		}
		if n >= int64(g.clusters) {
			return runs, n, false, t.f.corrupt(ino, -1, "cluster chain from %d loops (longer than the %d clusters of the volume)", first, g.clusters)
		}
		if n == 64 {
			seen = map[uint32]struct{}{}
			for _, r := range runs {
				for x := r.start; x < r.start+r.n; x++ {
					seen[x] = struct{}{}
				}
			}
		}
		if seen != nil {
			if _, ok := seen[c]; ok {
				return runs, n, false, t.f.corrupt(ino, -1, "cluster chain from %d loops back to cluster %d", first, c)
			}
			seen[c] = struct{}{}
		}
		if k := len(runs); k > 0 && runs[k-1].start+runs[k-1].n == c {
			runs[k-1].n++
		} else {
			runs = append(runs, run{start: c, n: 1})
		}
		n++
		next, err := t.entry(c)
		if err != nil {
			return runs, n, false, err
		}
		eoc, bad := t.classify(next)
		switch {
		case eoc:
			return runs, n, true, nil
		case bad:
			return runs, n, false, t.f.corrupt(ino, -1, "cluster chain from %d reaches a bad cluster after cluster %d", first, c)
		case next == 0:
			return runs, n, false, t.f.corrupt(ino, -1, "cluster chain from %d reaches a free cluster after cluster %d", first, c)
		}
		c = next
	}
}

// countFree counts free clusters.
func (t *fatTable) countFree() (int64, error) {
	var free int64
	for c := uint32(2); c <= t.f.geo.maxCluster(); c++ {
		v, err := t.entry(c)
		if err != nil {
			return free, err
		}
		if v == 0 {
			free++
		}
	}
	return free, nil
}
