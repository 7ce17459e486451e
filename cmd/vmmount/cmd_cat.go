package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/fsread/fsys"
)

type catOptions struct {
	imageFlags
}

func newCatCommand(g *globalOptions) *cobra.Command {
	var o catOptions
	c := &cobra.Command{
		Use:   "cat IMAGE... PATH",
		Short: "Write a file inside disk images to standard output",
		Long: `Write the content of a regular file inside a volume of one VM's disk images
to standard output, following symlinks inside the volume. Holes and
unwritten extents read as zeros.

` + pathArgHelp,
		Args: argsRange(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCat(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

// catChunk is the read size: large enough for sequential speed, small
// enough to notice Ctrl-C promptly.
const catChunk = 1 << 20

func runCat(ctx context.Context, g *globalOptions, o *catOptions, args []string) error {
	images, p, err := splitImagesPath(args, false)
	if err != nil {
		return err
	}
	s, err := openImageSet(ctx, images, o.Format)
	if err != nil {
		return err
	}
	defer s.Close()
	vol, rest, err := s.resolve(p)
	if err != nil {
		return err
	}
	if vol == nil {
		return fmt.Errorf("%s: %w (it lists volumes: use vmmount ls)", p, fsys.ErrIsDir)
	}
	f, ffs, err := openFS(vol)
	if err != nil {
		return err
	}
	ino, err := ffs.Resolve("cat", rest, true)
	if err != nil {
		return pathError(err, p)
	}
	st, err := f.Stat(ino)
	if err != nil {
		return pathError(err, p)
	}
	switch st.Mode & fsys.S_IFMT {
	case fsys.S_IFREG:
	case fsys.S_IFDIR:
		return fmt.Errorf("%s: %w", p, fsys.ErrIsDir)
	default:
		return fmt.Errorf("%s: a %s has no content to read: %w", p, typeName(st.Mode), fsys.ErrUnsupported)
	}
	file, err := f.Open(ino)
	if err != nil {
		return pathError(err, p)
	}
	buf := make([]byte, catChunk)
	for off := int64(0); off < file.Size(); {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := file.ReadAt(buf[:min(int64(len(buf)), file.Size()-off)], off)
		if n > 0 {
			if _, werr := g.stdout.Write(buf[:n]); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: at byte %d: %w", p, off, err)
		}
		if n == 0 {
			return fmt.Errorf("%s: file ends at byte %d of %d: %w", p, off, file.Size(), io.ErrUnexpectedEOF)
		}
	}
	return nil
}
