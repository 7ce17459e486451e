package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt/qcow2"
	"github.com/vmmount/vmmount/internal/progress"
)

// The copy pipeline: a producer walks the disk in chunks of chunkBlocks
// blocks, asks the plan what to read, and queues a job per chunk; workers
// read (several requests in flight, which is what an NBD export or a
// compressed source needs), hash each block, compare it with the parent's
// digest and compress; the writer takes jobs back in order. Chunks with
// nothing to read are decided by the producer without buffers, so an
// incremental with few changes costs almost nothing per unchanged GiB.
// Buffers come from a fixed pool taken in order, so memory is bounded and
// a slow chunk cannot deadlock later ones.

const (
	chunkBlocks = 32      // 2 MiB of disk per job (4 MiB page-cache writes were often much slower)
	planSpan    = 1 << 30 // plan window asked for at once
)

type copier struct {
	spec        copySpec
	size        int64
	workers     int
	comps       []*qcow2.Compressor
	out         output
	hashes      *repo.BlockHashes
	zeroSum     [sha256.Size]byte
	tailZeroSum [sha256.Size]byte
	changed     atomic.Int64
	prog        progress.Progress
	// mapped is the source mapped in memory when it can be (a raw
	// file): chunks are hashed and written from the page cache without
	// being copied into buffers first.
	mapped []byte
}

// mappedSource is a source that can hand out its bytes (raw.Image.Map).
type mappedSource interface {
	Map() ([]byte, error)
}

// faultErr turns a memory fault while touching the mapped source (the file
// was truncated under the backup) into an error.
func faultErr(err *error) {
	if r := recover(); r != nil {
		// debug.SetPanicOnFault's panics have an Addr method.
		if re, ok := r.(interface {
			runtime.Error
			Addr() uintptr
		}); ok {
			*err = fmt.Errorf("reading the disk: %v (was the image truncated during the backup?)", re)
			return
		}
		panic(r)
	}
}

// copyJob is one chunk: blocks [first, first+n).
type copyJob struct {
	first, n int64
	reads    []Range  // absolute, within the chunk, sorted
	buf      []byte   // room for n blocks (nil when nothing is read)
	blocks   [][]byte // each read block's bytes (in buf or the source's mapping); nil if not read
	clusters []qcow2.Cluster
	cbuf     []byte
	scratch  []byte
	err      error
	done     chan struct{}
}

// output is the image being written.
type output interface {
	// write stores a job's clusters (in order, in the writer goroutine).
	write(j *copyJob) error
	close(ctx context.Context) error
}

func (c *copier) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.prog.Start("copying", c.size)
	defer c.prog.Finish()

	nbuf := 2*c.workers + 2
	pool := make(chan []byte, nbuf)
	for range nbuf {
		pool <- make([]byte, chunkBlocks*blockSize)
	}
	work := make(chan *copyJob, nbuf)
	// Jobs with nothing to read hold no buffer: the order queue is deeper
	// than the pool, so on a sparse plan (an incremental's scattered
	// blocks) the reads of later chunks stay in flight meanwhile.
	order := make(chan *copyJob, 8*nbuf)
	var prodErr error
	go func() {
		defer close(work)
		defer close(order)
		prodErr = c.produce(ctx, pool, work, order)
	}()
	var wg sync.WaitGroup
	for i := range c.workers {
		var comp *qcow2.Compressor
		if c.comps != nil {
			comp = c.comps[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.mapped != nil {
				defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			}
			for j := range work {
				if ctx.Err() == nil {
					j.err = c.processSafe(j, comp)
				}
				close(j.done)
			}
		}()
	}
	var err error
	for j := range order {
		<-j.done // even after an error: the buffer returns only when unused
		if err == nil {
			if err = j.err; err == nil {
				err = ctx.Err()
			}
			if err == nil {
				err = c.write(j)
			}
			if err != nil {
				cancel()
			}
			c.prog.Add(min(j.n*blockSize, c.size-j.first*blockSize))
		}
		if j.buf != nil {
			pool <- j.buf[:cap(j.buf)]
		}
	}
	wg.Wait()
	if err == nil {
		err = prodErr
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// produce queues the chunks in order.
func (c *copier) produce(ctx context.Context, pool chan []byte, work, order chan<- *copyJob) error {
	nBlocks := int64(len(c.hashes.Sums))
	for span := int64(0); span < c.size; span += planSpan {
		spanEnd := min(span+planSpan, c.size)
		reads, err := c.spec.plan.Ranges(span, spanEnd-span)
		if err != nil {
			return err
		}
		for first := span / blockSize; first*blockSize < spanEnd; first += chunkBlocks {
			n := min(chunkBlocks, nBlocks-first)
			lo, hi := first*blockSize, min((first+n)*blockSize, c.size)
			j := &copyJob{first: first, n: n, done: make(chan struct{})}
			for len(reads) > 0 && reads[0].Off+reads[0].Len <= lo {
				reads = reads[1:]
			}
			for _, r := range reads {
				if r.Off >= hi {
					break
				}
				a, b := max(r.Off, lo), min(r.Off+r.Len, hi)
				if a < b {
					j.reads = append(j.reads, Range{a, b - a})
				}
			}
			if len(j.reads) == 0 {
				// Decided here: no I/O.
				j.err = c.process(j, nil)
				close(j.done)
				select {
				case order <- j:
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			select {
			case b := <-pool:
				j.buf = b[:n*blockSize]
			case <-ctx.Done():
				return ctx.Err()
			}
			order <- j
			work <- j
		}
	}
	return nil
}

func (c *copier) processSafe(j *copyJob, comp *qcow2.Compressor) (err error) {
	defer faultErr(&err)
	return c.process(j, comp)
}

// write hands a job to the output, in the writer goroutine.
func (c *copier) write(j *copyJob) (err error) {
	if c.mapped != nil {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer faultErr(&err)
	}
	return c.out.write(j)
}

// process reads a chunk's ranges, hashes its blocks and decides how each
// is stored.
func (c *copier) process(j *copyJob, comp *qcow2.Compressor) error {
	base := j.first * blockSize
	if cap(j.blocks) < int(j.n) {
		j.blocks = make([][]byte, j.n)
	}
	j.blocks = j.blocks[:j.n]
	clear(j.blocks)
	switch {
	case j.buf == nil:
	case base+j.n*blockSize <= int64(len(c.mapped)):
		for _, r := range j.reads {
			for off := r.Off; off < r.Off+r.Len; off += blockSize {
				j.blocks[(off-base)/blockSize] = c.mapped[off : off+blockSize]
			}
		}
	default:
		// The ranges are read one after the other into the start of the
		// buffer: a chunk with a few changed blocks touches a few blocks
		// of memory, not the whole buffer.
		pos := int64(0)
		for _, r := range j.reads {
			nb := (r.Len + blockSize - 1) / blockSize
			dst := j.buf[pos : pos+nb*blockSize]
			n, err := c.spec.src.ReadAt(dst[:r.Len], r.Off)
			if err == io.EOF && int64(n) == r.Len {
				err = nil
			}
			if err != nil {
				return fmt.Errorf("reading the disk at %d: %w", r.Off, err)
			}
			clear(dst[r.Len:]) // past the end of the disk, the last block reads as zeros
			for b := range nb {
				j.blocks[(r.Off-base)/blockSize+b] = dst[b*blockSize : (b+1)*blockSize]
			}
			pos += nb * blockSize
		}
	}
	if cap(j.clusters) < int(j.n) {
		j.clusters = make([]qcow2.Cluster, j.n)
	}
	j.clusters = j.clusters[:j.n]
	j.cbuf = j.cbuf[:0]
	type span struct{ i, start, n int }
	var comped []span
	par := c.spec.parent
	for k := range j.n {
		i := j.first + k
		blen := c.hashes.BlockLen(int(i))
		cl := &j.clusters[k]
		*cl = qcow2.Cluster{}
		u := j.blocks[k]
		if u == nil {
			// Not read: zeros, or unchanged since the parent.
			switch {
			case c.spec.plan.Inherit:
				c.hashes.Sums[i] = par.hashes.Sums[i]
			case par != nil && par.hashes.Sums[i] != c.zeroOf(blen):
				c.hashes.Sums[i] = c.zeroOf(blen)
				cl.Kind = qcow2.ClusterZero
				c.changed.Add(blen)
			default:
				c.hashes.Sums[i] = c.zeroOf(blen)
			}
			continue
		}
		sum := sha256.Sum256(u[:blen])
		c.hashes.Sums[i] = sum
		zero := sum == c.zeroOf(blen)
		switch {
		case par != nil && par.hashes.Sums[i] == sum:
			// Unchanged: left to the backing file.
		case zero && par != nil:
			cl.Kind = qcow2.ClusterZero
			c.changed.Add(blen)
		case zero:
		default:
			c.changed.Add(blen)
			if comp != nil {
				if out, ok := comp.Compress(j.scratch, u); ok {
					comped = append(comped, span{int(k), len(j.cbuf), len(out)})
					j.cbuf = append(j.cbuf, out...)
					j.scratch = out[:0]
					continue
				}
			}
			*cl = qcow2.Cluster{Kind: qcow2.ClusterData, Data: u}
		}
	}
	for _, sp := range comped { // cbuf may have moved while growing
		j.clusters[sp.i] = qcow2.Cluster{Kind: qcow2.ClusterCompressed, Data: j.cbuf[sp.start : sp.start+sp.n]}
	}
	return nil
}

func (c *copier) zeroOf(blen int64) [sha256.Size]byte {
	if blen == blockSize {
		return c.zeroSum
	}
	return c.tailZeroSum
}

// alignRanges widens sorted ranges to whole blocks (clamped to size) and
// merges those that then touch.
func alignRanges(rs []Range, size int64) []Range {
	var out []Range
	for _, r := range rs {
		lo := r.Off / blockSize * blockSize
		hi := min((r.Off+r.Len+blockSize-1)/blockSize*blockSize, size)
		if n := len(out); n > 0 && out[n-1].Off+out[n-1].Len >= lo {
			out[n-1].Len = max(out[n-1].Off+out[n-1].Len, hi) - out[n-1].Off
			continue
		}
		out = append(out, Range{lo, hi - lo})
	}
	return out
}

// isZero reports whether b is all zero bytes.
func isZero(b []byte) bool {
	var zero [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(zero))
		if !bytes.Equal(b[:n], zero[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
