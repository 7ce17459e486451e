package imagefmt

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/imagefmt/qcow2"
)

// rawBlock is the granularity at which a raw output skips zeros: the block
// size of common host filesystems, so every skipped block is a real hole
// (as qemu-img convert's default -S 4k).
const rawBlock = 4096

// rawSink writes a sparse raw image: data is written, all-zero blocks are
// not (the file starts empty, so they stay holes), and the file is
// truncated to the virtual size at the end.
type rawSink struct {
	f      *os.File
	name   string
	size   int64
	wbDone int64 // writeback was started for the bytes before this offset
}

func (s *rawSink) unit() int64 { return rawBlock }

func (s *rawSink) classify(j *job, _ *qcow2.Compressor) {}

func (s *rawSink) write(j *job) error {
	if j.hole || !j.readSrc {
		return nil
	}
	end := j.off + j.n
	nu := len(j.zero)
	for i := 0; i < nu; {
		if j.zero[i] {
			i++
			continue
		}
		k := i
		for k < nu && !j.zero[k] {
			k++
		}
		lo, hi := int64(i)*rawBlock, min(int64(k)*rawBlock, end-j.off)
		if _, err := s.f.WriteAt(j.buf[lo:hi], j.off+lo); err != nil {
			return fmt.Errorf("%s: writing at offset %d: %w", s.name, j.off+lo, err)
		}
		i = k
	}
	// Start writing back what is done so the final fsync is short (see
	// qcow2's Writer); a hint only, fsync reports errors.
	if end-s.wbDone >= 8<<20 {
		_ = unix.SyncFileRange(int(s.f.Fd()), s.wbDone, end-s.wbDone, unix.SYNC_FILE_RANGE_WRITE)
		s.wbDone = end
	}
	return nil
}

func (s *rawSink) close(ctx context.Context) error {
	if err := s.f.Truncate(s.size); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}
