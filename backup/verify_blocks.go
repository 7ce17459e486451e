package backup

import (
	"context"
	"crypto/sha256"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/progress"
)

// checkBlocks compares every block of one layer with the hash list h: the
// blocks the layer holds (data or zero clusters) are read and hashed; the
// others must carry the parent's digest (or the zero digest without a
// parent). Reads run on all cores.
func checkBlocks(ctx context.Context, top imagefmt.Image, h, parent *repo.BlockHashes, dr *DiskReport, opts VerifyOptions) error {
	size := top.Size()
	if parent != nil && (parent.Size != size || parent.BlockSize != h.BlockSize) {
		parent = nil
	}
	exts, err := top.Extents(0, size)
	if err != nil {
		return err
	}
	// held[i]: block i is held by this layer (wholly or in part: then it
	// is read, which reads the rest through nothing, i.e. zeros; points
	// only ever hold whole blocks).
	n := int64(len(h.Sums))
	held := make([]bool, n)
	for _, e := range exts {
		if e.Kind == imagefmt.Unallocated {
			continue
		}
		for i := e.Off / h.BlockSize; i < n && i*h.BlockSize < e.Off+e.Len; i++ {
			held[i] = true
		}
	}
	zero, tailZero := repo.ZeroSum(h.BlockSize), repo.ZeroSum(h.BlockLen(int(n-1)))
	var bad atomic.Int64
	var read, inherited int64
	for i := range n {
		if held[i] {
			read++
			continue
		}
		inherited++
		want := zero
		if i == n-1 {
			want = tailZero
		}
		if parent != nil {
			want = parent.Sums[i]
		}
		if h.Sums[i] != want {
			bad.Add(1)
		}
	}
	dr.BlocksRead, dr.BlocksInherited = read, inherited

	prog := progress.OrNop(opts.Progress)
	prog.Start("verifying "+dr.Target, read*h.BlockSize)
	defer prog.Finish()
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	const chunk = 64 // blocks per job
	jobs := make(chan int64)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk*h.BlockSize)
			for first := range jobs {
				last := min(first+chunk, n)
				lo, hi := first*h.BlockSize, min(last*h.BlockSize, size)
				if _, err := top.ReadAt(buf[:hi-lo], lo); err != nil && err != io.EOF {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				for i := first; i < last; i++ {
					if !held[i] {
						continue
					}
					b := buf[(i-first)*h.BlockSize : (i-first)*h.BlockSize+h.BlockLen(int(i))]
					if sha256.Sum256(b) != h.Sums[i] {
						bad.Add(1)
					}
					prog.Add(h.BlockSize)
				}
			}
		}()
	}
	for first := int64(0); first < n; first += chunk {
		any := false
		for i := first; i < min(first+chunk, n); i++ {
			any = any || held[i]
		}
		if !any {
			continue
		}
		select {
		case jobs <- first:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	dr.BadBlocks = bad.Load()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
