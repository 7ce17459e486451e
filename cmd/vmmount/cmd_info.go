package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/progress"
)

type infoOptions struct {
	Format string
}

func (o *infoOptions) AddFlags(c *cobra.Command) {
	c.Flags().StringVarP(&o.Format, "format", "f", "", "image format instead of detecting it (raw, qcow2, vmdk, vpc, vhdx)")
}

func newInfoCommand(g *globalOptions) *cobra.Command {
	var o infoOptions
	c := &cobra.Command{
		Use:   "info [--json] IMAGE...",
		Short: "Describe disk images: format, sizes, backing chain, volumes",
		Long: `Describe disk images: format (detected from content), virtual size, cluster
size, compression, backing chain, space allocated on the host.

The images given together are taken as the disks of one VM: their partition
table, partitions, LVM logical volumes (assembled across the disks) and what
each holds (filesystem type, label, UUID, from superblocks) are listed under
"volumes", with the paths ls, cat, stat and the mount use. Volumes vmmount
cannot read (swap, LUKS, XFS, ..., LVs with a missing disk) say why.`,
		Args: argsRange(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInfo(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

// imageReport is what `info --json` prints for one image.
type imageReport struct {
	*imagefmt.Info
	AllocatedVirtual int64 `json:"allocated_virtual_bytes"`
	volumeReport
}

func runInfo(ctx context.Context, g *globalOptions, o *infoOptions, args []string) error {
	var reports []imageReport
	var imgs []imagefmt.Image
	defer func() {
		for _, img := range imgs {
			img.Close()
		}
	}()
	for _, name := range args {
		img, err := imagefmt.OpenWith(name, imagefmt.Options{Format: o.Format})
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
		r := imageReport{Info: img.Info()}
		exts, err := img.Extents(0, img.Size())
		if err != nil {
			return err
		}
		for _, e := range exts {
			if e.Kind == imagefmt.Data {
				r.AllocatedVirtual += e.Len
			}
		}
		reports = append(reports, r)
	}
	lvs, err := addVolumes(ctx, args, imgs, reports)
	if err != nil {
		return err
	}
	if g.JSON {
		if len(reports) == 1 {
			return g.printJSON(reports[0])
		}
		return g.printJSON(reports)
	}
	for i, r := range reports {
		if i > 0 {
			g.printf("\n")
		}
		printImageInfo(g, r)
		printVolumes(g, r.volumeReport, len(reports) == 1)
	}
	if len(reports) > 1 && len(lvs) > 0 {
		g.printf("\nlogical volumes:\n")
		printVolumeRows(g, lvs)
	}
	return nil
}

func printImageInfo(g *globalOptions, r imageReport) {
	depth := 0
	for in := r.Info; in != nil; in = in.Backing {
		ind := strings.Repeat("  ", depth)
		g.printf("%simage: %s\n", ind, in.Filename)
		format := in.Format
		if in.Subformat != "" {
			format += " (" + in.Subformat + ")"
		}
		if in.Version != 0 {
			format += fmt.Sprintf(" v%d", in.Version)
		}
		g.printf("%sformat: %s\n", ind, format)
		g.printf("%svirtual size: %s (%d bytes)\n", ind, progress.Bytes(in.VirtualSize), in.VirtualSize)
		g.printf("%sdisk size: %s\n", ind, progress.Bytes(in.AllocatedBytes))
		if in.ClusterSize != 0 {
			g.printf("%scluster size: %d\n", ind, in.ClusterSize)
		}
		if in.SubclusterSize != 0 {
			g.printf("%ssubcluster size: %d\n", ind, in.SubclusterSize)
		}
		if in.Compression != "" {
			g.printf("%scompression: %s\n", ind, in.Compression)
		}
		if in.DataFile != "" {
			g.printf("%sdata file: %s\n", ind, in.DataFile)
		}
		for _, s := range in.Snapshots {
			g.printf("%ssnapshot: %s %q\n", ind, s.ID, s.Name)
		}
		for _, w := range in.Warnings {
			g.printf("%swarning: %s\n", ind, w)
		}
		if in.BackingFilename != "" {
			bf := in.BackingFilename
			if in.BackingFormat != "" {
				bf += " (" + in.BackingFormat + ")"
			}
			g.printf("%sbacking file: %s\n", ind, bf)
		}
		depth++
	}
	if r.Info.Backing == nil {
		g.printf("allocated in guest: %s\n", progress.Bytes(r.AllocatedVirtual))
	} else {
		g.printf("allocated in guest (whole chain): %s\n", progress.Bytes(r.AllocatedVirtual))
	}
}
