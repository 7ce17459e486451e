package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/imagefmt"
)

// pathArgHelp is the rule, shown in the --help of ls, cat and stat, that
// separates images from the path inside them.
const pathArgHelp = `IMAGE... are the disk images of one VM (raw, qcow2, vmdk, vhd, vhdx; backing
chains are followed). PATH is the last argument when it starts with "/" and is
not a file on this host (so /var/lib/libvirt/images/vm.qcow2 is an image). It
names /<volume>/<path inside it> with one image, /<disk>/<volume>/<path> with
several (<disk> is the image file's name without extension), and
/<vg>-<lv>/<path> for LVM logical volumes. "/" lists the volumes.
` + "`vmmount info IMAGE...`" + ` shows them.`

// imageFlags are the options of commands that open images as a VM's disks.
type imageFlags struct {
	Format string
}

func (o *imageFlags) AddFlags(c *cobra.Command) {
	c.Flags().StringVarP(&o.Format, "format", "f", "", "image format instead of detecting it (raw, qcow2, vmdk, vpc, vhdx)")
}

// splitImagesPath separates the images from the path: the path is the last
// argument when it starts with "/", is not the only argument, and is not a
// file on the host (an image given by its absolute name). With optional, a
// missing path means "/"; otherwise it is a usage error.
func splitImagesPath(args []string, optional bool) ([]string, string, error) {
	n := len(args)
	if n >= 2 && strings.HasPrefix(args[n-1], "/") && !isHostFile(args[n-1]) {
		return args[:n-1], args[n-1], nil
	}
	if optional && n >= 1 {
		return args, "/", nil
	}
	if n >= 1 && !strings.HasPrefix(args[n-1], "/") {
		return nil, "", usageError{fmt.Errorf("the last argument %q must be a path starting with /", args[n-1])}
	}
	return nil, "", usageError{errors.New("give one or more images and then a path starting with / (the last argument is a file on this host: an image)")}
}

// isHostFile says whether name is an existing file (not a directory) here.
func isHostFile(name string) bool {
	st, err := os.Stat(name)
	return err == nil && !st.IsDir()
}

// imageSet is images opened as the disks of one VM, with their volumes.
type imageSet struct {
	images []imagefmt.Image
	set    *fsread.Set
}

func openImageSet(ctx context.Context, names []string, format string) (*imageSet, error) {
	return openImageSetWith(ctx, names, format, fsread.Options{})
}

func openImageSetWith(ctx context.Context, names []string, format string, opts fsread.Options) (*imageSet, error) {
	s := &imageSet{}
	var srcs []fsread.DiskSource
	for _, n := range names {
		img, err := imagefmt.OpenWith(n, imagefmt.Options{Format: format})
		if err != nil {
			s.Close()
			return nil, err
		}
		s.images = append(s.images, img)
		srcs = append(srcs, fsread.DiskSource{Name: fsread.DiskName(n), Image: img, SectorSize: img.Info().LogicalBlock})
	}
	set, err := fsread.OpenSetWith(ctx, srcs, opts)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.set = set
	return s, nil
}

func (s *imageSet) Close() {
	if s.set != nil {
		s.set.Close()
	}
	for _, img := range s.images {
		img.Close()
	}
}

// resolve finds the volume of p.
func (s *imageSet) resolve(p string) (*fsread.Volume, string, error) {
	return s.set.Resolve(p)
}

// openFS opens the filesystem of a volume and its io/fs view.
func openFS(vol *fsread.Volume) (fsread.FileSystem, fsread.FS, error) {
	f, err := vol.FS()
	if err != nil {
		return nil, fsread.FS{}, err
	}
	return f, fsread.NewFS(f), nil
}

// joinPath joins a volume path and a path inside it for messages.
func joinPath(vol *fsread.Volume, rest string) string {
	if rest == "." || rest == "" {
		return vol.Path
	}
	return vol.Path + "/" + rest
}

// pathError names the namespace path in an error from a volume's
// filesystem: the io/fs view's *fs.PathError gets the full path instead of
// the one inside the volume; other errors are prefixed with it.
func pathError(err error, full string) error {
	if pe, ok := err.(*fs.PathError); ok {
		return &fs.PathError{Op: pe.Op, Path: full, Err: pe.Err}
	}
	return fmt.Errorf("%s: %w", full, err)
}
