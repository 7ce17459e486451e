package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/progress"
)

type convertOptions struct {
	SrcFormat     string
	OutFormat     string
	Compression   string
	ClusterSize   string
	Backing       string
	BackingFormat string
	Force         bool
}

func (o *convertOptions) AddFlags(c *cobra.Command) {
	f := c.Flags()
	f.StringVarP(&o.SrcFormat, "format", "f", "", "source format instead of detecting it (raw, qcow2, vmdk, vpc, vhdx)")
	f.StringVarP(&o.OutFormat, "output-format", "O", "qcow2", "output format: qcow2 or raw")
	f.StringVarP(&o.Compression, "compress", "c", "", "compress qcow2 clusters with zstd or zlib, on all cores")
	f.StringVar(&o.ClusterSize, "cluster-size", "", "qcow2 cluster size, 512 to 2M (default 64K)")
	f.StringVarP(&o.Backing, "backing", "B", "", "make the qcow2 output an overlay of this image, storing only what differs (relative to DST's directory)")
	f.StringVarP(&o.BackingFormat, "backing-format", "F", "", "format of the backing image (detected when omitted)")
	f.BoolVar(&o.Force, "force", false, "replace DST if it exists")
}

func newConvertCommand(g *globalOptions) *cobra.Command {
	var o convertOptions
	c := &cobra.Command{
		Use:   "convert [-O raw|qcow2] [-c zstd|zlib] [--cluster-size N] [-B backing -F fmt] SRC DST",
		Short: "Copy a disk image into a new qcow2 or sparse raw image",
		Long: `Copy the disk SRC (any format vmmount reads, with its backing chain) into a
new image DST: qcow2 (v3, opened unchanged by qemu and libvirt) or sparse raw.
Holes and all-zero data are not stored; -c compresses on all cores. With -B
the qcow2 output is an overlay of the given image and stores only the
clusters that differ from it.

DST is written under a temporary name next to it and renamed when complete
and synced; an interrupted conversion leaves nothing behind. An existing DST
is refused unless --force.`,
		Args: argsRange(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConvert(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

// convertReport is what `convert --json` prints.
type convertReport struct {
	Output         string `json:"output"`
	Format         string `json:"format"`
	VirtualSize    int64  `json:"virtual_size"`
	FileSize       int64  `json:"file_size"`
	AllocatedBytes int64  `json:"allocated_bytes"`
}

func runConvert(ctx context.Context, g *globalOptions, o *convertOptions, args []string) error {
	src, dst := args[0], args[1]
	opts := imagefmt.ConvertOptions{
		Format:        strings.ToLower(o.OutFormat),
		Compression:   strings.ToLower(o.Compression),
		BackingFile:   o.Backing,
		BackingFormat: o.BackingFormat,
	}
	switch opts.Format {
	case "qcow2", "raw":
	default:
		return usageError{fmt.Errorf("-O %q: want qcow2 or raw", o.OutFormat)}
	}
	switch opts.Compression {
	case "", "zstd", "zlib":
	default:
		return usageError{fmt.Errorf("-c %q: want zstd or zlib", o.Compression)}
	}
	if o.ClusterSize != "" {
		n, err := parseSize(o.ClusterSize)
		if err != nil || n < 512 || n > 2<<20 || n&(n-1) != 0 {
			return usageError{fmt.Errorf("--cluster-size %q: want a power of two from 512 to 2M", o.ClusterSize)}
		}
		opts.ClusterSize = n
	}
	if opts.Format == "raw" && (opts.Compression != "" || opts.BackingFile != "" || opts.ClusterSize != 0) {
		return usageError{errors.New("-c, --cluster-size and -B apply to qcow2 output only")}
	}
	if opts.BackingFormat != "" && opts.BackingFile == "" {
		return usageError{errors.New("-F needs -B")}
	}

	// Refuse before any expensive work.
	if st, err := os.Stat(dst); err == nil {
		if !o.Force {
			return refusedError{fmt.Errorf("%s exists; use --force to replace it", dst)}
		}
		if !st.Mode().IsRegular() {
			return refusedError{fmt.Errorf("%s is not a regular file", dst)}
		}
		if sst, err := os.Stat(src); err == nil && os.SameFile(st, sst) {
			return refusedError{fmt.Errorf("%s and %s are the same file", src, dst)}
		}
	}
	if _, err := os.Stat(filepath.Dir(dst)); err != nil {
		return err
	}

	img, err := imagefmt.OpenWith(src, imagefmt.Options{Format: o.SrcFormat})
	if err != nil {
		return err
	}
	defer img.Close()
	if g.showProgress() {
		opts.Progress = progress.NewBar(g.stderr)
	}
	g.debugf("converting %s (%s, %d bytes) to %s %+v\n", src, img.Info().Format, img.Size(), dst, opts)
	if err := imagefmt.Convert(ctx, img, dst, opts); err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted, %s not written: %w", dst, err)
		}
		return err
	}

	r := convertReport{Output: dst, Format: opts.Format, VirtualSize: img.Size()}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err == nil {
		r.FileSize, r.AllocatedBytes = st.Size, st.Blocks*512
	}
	if g.JSON {
		return g.printJSON(r)
	}
	g.verbosef("wrote %s: %s, virtual size %s, %s on disk\n", dst, r.Format,
		progress.Bytes(r.VirtualSize), progress.Bytes(r.AllocatedBytes))
	return nil
}

// parseSize reads a byte count with an optional K, M, G suffix (powers of
// 1024, as qemu-img reads them).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "I")
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult != 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}
