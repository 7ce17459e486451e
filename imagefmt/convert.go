package imagefmt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vmmount/vmmount/imagefmt/qcow2"
	"github.com/vmmount/vmmount/internal/progress"
)

// ConvertOptions describe the image Convert writes.
type ConvertOptions struct {
	// Format is "qcow2" (the default) or "raw".
	Format string
	// ClusterSize of a qcow2 output, 512 B to 2 MiB; 0 means 64 KiB.
	ClusterSize int64
	// Compression compresses the clusters of a qcow2 output: "zstd" or
	// "zlib"; "" writes them uncompressed. Done on all cores.
	Compression string
	// BackingFile makes a qcow2 output an overlay of this image, recorded
	// as written (a relative name is relative to the output's directory).
	// Only clusters that differ from it are stored.
	BackingFile string
	// BackingFormat of BackingFile; detected from its content when empty
	// (and recorded, as qemu and libvirt want it named).
	BackingFormat string
	// Progress receives the bytes of the virtual disk done; nil for none.
	Progress progress.Progress
	// Workers compressing and scanning for zeros; 0 means one per core.
	Workers int
}

// errBadOption marks a ConvertOptions combination that makes no sense.
var errBadOption = errors.New("invalid conversion option")

// Convert writes the content of src to a new image dst. It reads only what
// src.Extents reports as data, stores all-zero ranges as holes (raw),
// unallocated or zero clusters (qcow2), and compresses on all cores. The
// output is written under a temporary name in dst's directory, fsynced and
// renamed over dst at the end, so dst is never seen half written and an
// existing dst is replaced only by a complete image. On error or when ctx
// is cancelled the partial output is removed and ctx.Err() is returned.
func Convert(ctx context.Context, src Image, dst string, opts ConvertOptions) (err error) {
	if strings.EqualFold(opts.Compression, "none") {
		opts.Compression = ""
	}
	format := strings.ToLower(opts.Format)
	if format == "" {
		format = FormatQcow2
	}
	switch format {
	case FormatQcow2:
	case FormatRaw:
		if opts.Compression != "" || opts.BackingFile != "" || opts.ClusterSize != 0 {
			return fmt.Errorf("%w: raw output takes no compression, backing file or cluster size", errBadOption)
		}
	default:
		return fmt.Errorf("%w: output format %q (want raw or qcow2)", errBadOption, opts.Format)
	}
	if opts.BackingFormat != "" && opts.BackingFile == "" {
		return fmt.Errorf("%w: backing format without a backing file", errBadOption)
	}

	c := &converter{src: src, size: src.Size(), prog: progress.OrNop(opts.Progress)}
	c.workers = opts.Workers
	if c.workers <= 0 {
		c.workers = runtime.GOMAXPROCS(0)
	}
	if opts.BackingFile != "" {
		bname := opts.BackingFile
		if !filepath.IsAbs(bname) {
			bname = filepath.Join(filepath.Dir(dst), bname)
		}
		c.back, err = OpenWith(bname, Options{Format: opts.BackingFormat})
		if err != nil {
			return fmt.Errorf("opening backing file: %w", err)
		}
		defer c.back.Close()
		if opts.BackingFormat == "" {
			opts.BackingFormat = c.back.Info().Format
		}
	}

	f, tmp, err := createTemp(dst)
	if err != nil {
		return err
	}
	var qw *qcow2.Writer
	defer func() {
		if err != nil && qw != nil {
			qw.Abort()
		}
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()

	switch format {
	case FormatQcow2:
		qopts := qcow2.CreateOptions{ClusterSize: opts.ClusterSize, BackingFile: opts.BackingFile,
			BackingFormat: opts.BackingFormat, Compression: opts.Compression}
		w, err := qcow2.NewWriter(f, c.size, qopts)
		if err != nil {
			return err
		}
		qw = w
		c.sink = &qcow2Sink{w: w}
		if opts.Compression != "" {
			for range c.workers {
				comp, err := qcow2.NewCompressor(opts.Compression, w.ClusterSize())
				if err != nil {
					return err
				}
				c.comps = append(c.comps, comp)
			}
		}
	case FormatRaw:
		c.sink = &rawSink{f: f, name: dst, size: c.size}
	}

	c.prog.Start("converting", c.size)
	err = c.run(ctx)
	c.prog.Finish()
	if err != nil {
		return err
	}
	if err = c.sink.close(ctx); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		f = nil
		return err
	}
	f = nil
	if err = ctx.Err(); err != nil {
		return err
	}
	if err = os.Rename(tmp, dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// createTemp creates the file the output is written to, next to dst so the
// final rename stays on one filesystem and relative backing names resolve
// the same.
func createTemp(dst string) (*os.File, string, error) {
	dir, base := filepath.Split(dst)
	if dir == "" {
		dir = "."
	}
	if st, err := os.Stat(dst); err == nil && !st.Mode().IsRegular() {
		return nil, "", fmt.Errorf("%s is not a regular file", dst)
	}
	for i := 0; ; i++ {
		name := filepath.Join(dir, "."+base+".vmmount-"+strconv.FormatInt(time.Now().UnixNano()%1e9+int64(i), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			return f, name, nil
		}
		if !os.IsExist(err) || i > 100 {
			return nil, "", err
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
