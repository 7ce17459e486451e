package qcow2

import (
	"fmt"
	"io"
	"runtime"
	"sync"
)

// The read path. A read walks the L2 entries of the range once, merging
// consecutive segments into runs: data clusters that follow each other in
// the host file become one pread straight into the caller's buffer, zero and
// unallocated ranges one clear or one read of the backing image. Nothing is
// shared between calls but the caches, so concurrent reads (FUSE serves
// them in parallel) need no lock beyond the caches' own.

// run is a merged range of segments of one kind.
type run struct {
	segment       // kind, host and entry of the first segment; n is the total
	pos     int64 // guest offset of the run
}

// nextRun returns the run starting at pos, not reaching past end. For
// reads (forRead), data segments merge only when they are contiguous on the
// host; for the allocation map they merge whatever their host offsets, and
// compressed clusters count as data.
func (img *Image) nextRun(c *cursor, pos, end int64, forRead bool) (run, error) {
	s, err := img.segmentAt(c, pos)
	if err != nil {
		return run{}, err
	}
	if !forRead && s.kind == segCompressed {
		s.kind = segData
	}
	r := run{segment: s, pos: pos}
	r.n = min(r.n, end-pos)
	if forRead && r.kind == segCompressed {
		return r, nil // decompressed one cluster at a time
	}
	for p := pos + r.n; p < end; p = pos + r.n {
		t, err := img.segmentAt(c, p)
		if err != nil {
			if forRead {
				// Read what precedes the bad entry; the next call
				// reports it.
				return r, nil
			}
			return run{}, err
		}
		if !forRead && t.kind == segCompressed {
			t.kind = segData
		}
		if t.kind != r.kind || (forRead && t.kind == segData && t.host != r.host+r.n) {
			break
		}
		r.n += min(t.n, end-p)
	}
	return r, nil
}

// ReadAt reads the guest disk, following io.ReaderAt: a read that reaches
// past Size returns the bytes up to Size and io.EOF.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative read offset %d", img.name, off)
	}
	size := img.hdr.VirtualSize
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > size-off {
		p = p[:size-off]
	}
	if err := img.read(p, off); err != nil {
		return 0, err
	}
	if len(p) < want {
		return len(p), io.EOF
	}
	return len(p), nil
}

// compressedJob is a whole compressed cluster to inflate into dst.
type compressedJob struct {
	dst   []byte
	s     segment
	guest int64
}

func (img *Image) read(p []byte, off int64) error {
	c := newCursor()
	end := off + int64(len(p))
	cs := img.hdr.ClusterSize
	var jobs []compressedJob
	for pos := off; pos < end; {
		r, err := img.nextRun(&c, pos, end, true)
		if err != nil {
			return err
		}
		buf := p[pos-off : pos-off+r.n]
		switch r.kind {
		case segData:
			if err := img.readData(buf, r); err != nil {
				return err
			}
		case segZero:
			clear(buf)
		case segUnallocated:
			if err := img.readBacking(buf, pos); err != nil {
				return err
			}
		case segCompressed:
			guest := pos &^ (cs - 1)
			if pos == guest && r.n == cs {
				jobs = append(jobs, compressedJob{dst: buf, s: r.segment, guest: guest})
				break
			}
			b, err := img.cachedCluster(r.segment, guest)
			if err != nil {
				return err
			}
			copy(buf, b[pos-guest:])
		}
		pos += r.n
	}
	return img.inflateAll(jobs)
}

// readData reads a data run from the data file.
func (img *Image) readData(buf []byte, r run) error {
	n, err := img.data.ReadAt(buf, r.host)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		// checkHost saw the cluster inside the file: it shrank since.
		return fmtErr(img.name, r.entryOff, r.host, "data for guest offset %d past the end of %s", r.pos, img.data.Name())
	}
	return fmt.Errorf("%s: reading guest offset %d at host offset %d of %s: %w", img.name, r.pos, r.host, img.data.Name(), err)
}

// readBacking fills buf with guest bytes from pos on that this layer does
// not hold: from the backing image as far as it reaches, zeros beyond (spec
// "Cluster mapping": a smaller backing file reads as zeros past its end).
func (img *Image) readBacking(buf []byte, pos int64) error {
	if img.backing == nil {
		clear(buf)
		return nil
	}
	n := int64(0)
	if bs := img.backing.Size(); pos < bs {
		n = min(int64(len(buf)), bs-pos)
		m, err := img.backing.ReadAt(buf[:n], pos)
		if int64(m) < n {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%s: reading backing file at guest offset %d: %w", img.name, pos, err)
		}
	}
	clear(buf[n:])
	return nil
}

// inflateAll decompresses whole clusters, in parallel when there are
// several: a large read of a compressed image is CPU bound.
func (img *Image) inflateAll(jobs []compressedJob) error {
	switch len(jobs) {
	case 0:
		return nil
	case 1:
		j := jobs[0]
		return img.compressedCluster(j.dst, j.s.entry, j.s.entryOff, j.guest)
	}
	workers := min(len(jobs), runtime.GOMAXPROCS(0))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		next  int
		first error
	)
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				if next >= len(jobs) || first != nil {
					mu.Unlock()
					return
				}
				j := jobs[next]
				next++
				mu.Unlock()
				if err := img.compressedCluster(j.dst, j.s.entry, j.s.entryOff, j.guest); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return first
}
