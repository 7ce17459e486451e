package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/internal/progress"
)

type statOptions struct {
	imageFlags
}

func newStatCommand(g *globalOptions) *cobra.Command {
	var o statOptions
	c := &cobra.Command{
		Use:   "stat [--json] IMAGE... PATH",
		Short: "Show the metadata of a file inside disk images",
		Long: `Show everything the filesystem records about a file inside one VM's disk
images, without following a final symlink (as stat(1)): type, size, blocks,
inode, links, mode, uid, gid, device numbers, flags, access, modify, change
and birth times with nanoseconds (UTC), the symlink target and the names of
the extended attributes. A volume that holds no readable filesystem, a disk
or "/" is described instead.

` + pathArgHelp,
		Args: argsRange(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStat(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

// statReport is what `stat --json` prints for a file.
type statReport struct {
	Path       string `json:"path"`
	Volume     string `json:"volume"`
	Type       string `json:"type"`
	ModeString string `json:"mode_string"`
	*fsys.Stat
	Target string   `json:"target,omitempty"`
	Xattrs []string `json:"xattrs"`
}

func runStat(ctx context.Context, g *globalOptions, o *statOptions, args []string) error {
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
		return statNamespace(g, s.set.Dir(p))
	}
	if rest == "." && !vol.Readable() {
		return statVolume(g, vol)
	}
	f, ffs, err := openFS(vol)
	if err != nil {
		return err
	}
	ino, err := ffs.Resolve("stat", rest, false)
	if err != nil {
		return pathError(err, p)
	}
	st, err := f.Stat(ino)
	if err != nil {
		return pathError(err, p)
	}
	r := statReport{Path: joinPath(vol, rest), Volume: vol.Path, Type: typeWord(st.Mode), ModeString: modeString(st.Mode), Stat: st, Xattrs: []string{}}
	if st.Mode&fsys.S_IFMT == fsys.S_IFLNK {
		if r.Target, err = f.Readlink(ino); err != nil {
			return pathError(err, p)
		}
	}
	names, err := f.Xattrs(ino)
	if err != nil {
		return fmt.Errorf("%s: extended attributes: %w", p, err)
	}
	r.Xattrs = append(r.Xattrs, names...)
	if g.JSON {
		return g.printJSON(r)
	}
	g.printf("  File: %s", escapeName(r.Path))
	if r.Target != "" {
		g.printf(" -> %s", escapeName(r.Target))
	}
	g.printf("\n")
	g.printf("  Type: %s\n", typeName(st.Mode))
	g.printf("  Size: %-15d Blocks: %d\n", st.Size, st.Blocks)
	g.printf(" Inode: %-15d Links: %d\n", st.Ino, st.Nlink)
	if isDevice(st.Mode) {
		g.printf("Device: %s (rdev %#x)\n", devString(st.Rdev), st.Rdev)
	}
	g.printf("Access: (%04o/%s)  Uid: %d  Gid: %d\n", st.Mode&0o7777, modeString(st.Mode), st.Uid, st.Gid)
	if st.Flags != 0 {
		g.printf(" Flags: %#x\n", st.Flags)
	}
	g.printf("Access: %s\n", statTime(st.Atime))
	g.printf("Modify: %s\n", statTime(st.Mtime))
	g.printf("Change: %s\n", statTime(st.Ctime))
	g.printf(" Birth: %s\n", statTime(st.Btime))
	if len(names) > 0 {
		esc := make([]string, len(names))
		for i, n := range names {
			esc[i] = escapeName(n)
		}
		g.printf("Xattrs: %s\n", strings.Join(esc, ", "))
	}
	g.printf("Volume: %s (%s)\n", vol.Path, vol.FSType)
	return nil
}

// statVolume describes a volume without a readable filesystem.
func statVolume(g *globalOptions, v *fsread.Volume) error {
	if g.JSON {
		return g.printJSON(v)
	}
	g.printf("Volume: %s\n", v.Path)
	g.printf("    FS: %s\n", v.FSType)
	g.printf("  Size: %s (%d bytes)\n", progress.Bytes(v.Size), v.Size)
	if v.Kind == fsread.KindPartition {
		g.printf("Offset: %d\n", v.Offset)
	}
	if v.Label != "" {
		g.printf(" Label: %s\n", escapeName(v.Label))
	}
	if v.UUID != "" {
		g.printf("  UUID: %s\n", v.UUID)
	}
	g.printf("  Note: %s\n", strings.TrimPrefix(v.Err().Error(), v.Path+": "))
	return nil
}

// statNamespace describes "/" or a disk directory.
func statNamespace(g *globalOptions, d *fsread.Dir) error {
	var names []string
	for _, sub := range d.Dirs {
		names = append(names, sub.Name)
	}
	for _, v := range d.Volumes {
		names = append(names, v.Name)
	}
	if g.JSON {
		return g.printJSON(struct {
			Path    string       `json:"path"`
			Type    string       `json:"type"`
			Disk    *fsread.Disk `json:"disk,omitempty"`
			Entries []string     `json:"entries"`
		}{d.Path, "namespace", d.Disk, names})
	}
	g.printf("  Path: %s\n", d.Path)
	g.printf("  Type: vmmount directory of disks and volumes\n")
	if d.Disk != nil && d.Path != "/" {
		g.printf("  Disk: %s, %s\n", d.Disk.Name, progress.Bytes(d.Disk.Size))
	}
	g.printf("Entries: %s\n", strings.Join(names, " "))
	return nil
}
