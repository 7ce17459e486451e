package imagefmt

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/vmmount/vmmount/imagefmt/qcow2"
	"github.com/vmmount/vmmount/internal/progress"
)

// The conversion pipeline: one producer walks the allocation map in chunks
// and hands chunks with data to a pool of workers, which read them (several
// reads in flight, which helps sources that decompress), look for zeros and
// compress; one writer takes the chunks back in order and appends them to
// the output. Buffers come from a fixed pool taken in order by the
// producer, so memory is bounded and a slow chunk cannot deadlock later
// ones.

const (
	// chunkSize is the bytes of virtual disk per job, and so the size of
	// most writes. Measured on ext4: 2 MiB writes into the page cache run
	// at a steady speed where 4 MiB writes were often three times slower.
	chunkSize   = 2 << 20
	extentsSpan = 1 << 30 // allocation map window queried at once
)

type converter struct {
	src, back Image
	size      int64
	workers   int
	comps     []*qcow2.Compressor // one per worker, nil without compression
	sink      sink
	prog      progress.Progress
	unit      int64 // classification unit: the cluster (qcow2), 4 KiB (raw)
	chunk     int64
}

// sink is the output format.
type sink interface {
	// unit is the granularity at which zeros are detected and data is
	// stored.
	unit() int64
	// classify decides how each unit of j is stored (in a worker).
	classify(j *job, comp *qcow2.Compressor)
	// write stores j (in order, in the writer goroutine).
	write(j *job) error
	close(ctx context.Context) error
}

type job struct {
	off, n int64 // virtual range; n is a multiple of unit except at the end
	hole   bool  // no data in src nor in the backing file: nothing to store
	readSrc,
	readBack bool
	buf, back []byte // src and backing data, len rounded up to unit
	zero      []bool // per unit: all zero (src)
	same      []bool // per unit: equal to the backing file
	clusters  []qcow2.Cluster
	cbuf      []byte
	scratch   []byte
	err       error
	done      chan struct{}
}

type bufPair struct{ buf, back []byte }

func (c *converter) run(ctx context.Context) error {
	c.unit = c.sink.unit()
	c.chunk = max(chunkSize/c.unit, 2) * c.unit
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	nbuf := 2*c.workers + 2
	pool := make(chan bufPair, nbuf)
	for range nbuf {
		p := bufPair{buf: make([]byte, c.chunk)}
		if c.back != nil {
			p.back = make([]byte, c.chunk)
		}
		pool <- p
	}
	work := make(chan *job, nbuf)
	order := make(chan *job, nbuf)

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
			for j := range work {
				if ctx.Err() == nil {
					j.err = c.process(j, comp)
				}
				close(j.done)
			}
		}()
	}
	var err error
	for j := range order {
		// Wait even after an error: the buffer goes back to the pool
		// only once no worker uses it.
		<-j.done
		if err == nil {
			err = j.err
			if err == nil {
				err = ctx.Err()
			}
			if err == nil {
				err = c.sink.write(j)
			}
			if err != nil {
				cancel()
			}
			c.prog.Add(j.n)
		}
		if j.buf != nil {
			pool <- bufPair{buf: j.buf[:cap(j.buf)], back: j.back}
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

// produce walks the allocation maps of the source and the backing file and
// queues a job per chunk with data, and one per run of chunks without.
func (c *converter) produce(ctx context.Context, pool chan bufPair, work, order chan<- *job) error {
	var hole *job
	flushHole := func() {
		if hole != nil {
			close(hole.done)
			order <- hole
			hole = nil
		}
	}
	for span := int64(0); span < c.size; span += extentsSpan {
		spanEnd := min(span+extentsSpan, c.size)
		srcData, err := dataRanges(c.src, span, spanEnd-span)
		if err != nil {
			return err
		}
		var backData []rng
		if c.back != nil {
			if backData, err = dataRanges(c.back, span, min(spanEnd, c.back.Size())-span); err != nil {
				return fmt.Errorf("backing file: %w", err)
			}
		}
		for off := span; off < spanEnd; off += c.chunk {
			n := min(c.chunk, spanEnd-off)
			rs, rb := overlaps(srcData, off, n), overlaps(backData, off, n)
			if !rs && !rb {
				if hole == nil {
					hole = &job{off: off, hole: true, done: make(chan struct{})}
				}
				hole.n += n
				continue
			}
			flushHole()
			var p bufPair
			select {
			case p = <-pool:
			case <-ctx.Done():
				return ctx.Err()
			}
			padded := (n + c.unit - 1) / c.unit * c.unit
			j := &job{off: off, n: n, readSrc: rs, readBack: rb, buf: p.buf[:padded], done: make(chan struct{})}
			if p.back != nil {
				j.back = p.back[:padded]
			}
			order <- j
			work <- j
		}
	}
	flushHole()
	return nil
}

// process reads a job's data and decides how each unit is stored.
func (c *converter) process(j *job, comp *qcow2.Compressor) error {
	if err := readFull(c.src, j.buf, j.off, j.readSrc); err != nil {
		return fmt.Errorf("reading source at %d: %w", j.off, err)
	}
	if c.back != nil {
		if err := readFull(c.back, j.back, j.off, j.readBack); err != nil {
			return fmt.Errorf("reading backing file at %d: %w", j.off, err)
		}
	}
	nu := len(j.buf) / int(c.unit)
	j.zero = resize(j.zero, nu)
	for i := range nu {
		u := j.buf[int64(i)*c.unit : int64(i+1)*c.unit]
		j.zero[i] = isZero(u)
	}
	if c.back != nil {
		j.same = resize(j.same, nu)
		for i := range nu {
			lo, hi := int64(i)*c.unit, int64(i+1)*c.unit
			if j.zero[i] {
				j.same[i] = isZero(j.back[lo:hi])
			} else {
				j.same[i] = bytes.Equal(j.buf[lo:hi], j.back[lo:hi])
			}
		}
	}
	c.sink.classify(j, comp)
	return nil
}

// readFull fills b with the image's bytes at off: zeros past the end, and
// zeros without reading when the range holds no data.
func readFull(img Image, b []byte, off int64, hasData bool) error {
	if !hasData {
		clear(b)
		return nil
	}
	n, err := img.ReadAt(b, off)
	if err == io.EOF {
		err = nil
	}
	clear(b[n:])
	return err
}

func resize(b []bool, n int) []bool {
	if cap(b) < n {
		return make([]bool, n)
	}
	return b[:n]
}

type rng struct{ off, end int64 }

// dataRanges lists the Data extents of img in [off, off+n).
func dataRanges(img Image, off, n int64) ([]rng, error) {
	if n <= 0 {
		return nil, nil
	}
	exts, err := img.Extents(off, n)
	if err != nil {
		return nil, err
	}
	var out []rng
	for _, e := range exts {
		if e.Kind == Data && e.Len > 0 {
			out = append(out, rng{e.Off, e.Off + e.Len})
		}
	}
	return out, nil
}

// overlaps says whether any range in rs (sorted) meets [off, off+n).
func overlaps(rs []rng, off, n int64) bool {
	// Binary search for the first range ending after off.
	lo, hi := 0, len(rs)
	for lo < hi {
		m := (lo + hi) / 2
		if rs[m].end <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(rs) && rs[lo].off < off+n
}

var zeroBlock [64 << 10]byte

// isZero reports whether b is all zero bytes (bytes.Equal is vectorized).
func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
