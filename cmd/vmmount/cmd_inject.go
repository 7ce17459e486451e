package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/inject"
	"github.com/vmmount/vmmount/inject/extwrite"
	"github.com/vmmount/vmmount/internal/progress"
)

type injectOptions struct {
	Connect   string
	Images    []string
	Format    string
	Owner     string
	Mode      string
	Parents   bool
	Overwrite bool
	DryRun    bool
	Undo      string
	UndoFile  string
	// RestorePoint is set when --repo was given: a restore point of the
	// VM is taken first.
	RestorePoint bool
}

func (o *injectOptions) AddFlags(c *cobra.Command) {
	f := c.Flags()
	f.StringVarP(&o.Connect, "connect", "c", inject.DefaultURI, "libvirt URI of this host's hypervisor")
	f.StringArrayVar(&o.Images, "image", nil, "another disk image of the same VM (TARGET is the first), repeated")
	f.StringVarP(&o.Format, "format", "f", "", "image format instead of detecting it (raw, qcow2)")
	f.StringVar(&o.Owner, "owner", "", "UID:GID of what is created and of replaced files (default 0:0 for new, kept for replaced)")
	f.StringVar(&o.Mode, "mode", "", "permission bits (octal) of injected files (default: the source's for new files, kept for replaced)")
	f.BoolVarP(&o.Parents, "parents", "p", false, "make missing directories of GUEST_DIR (mode 0755)")
	f.BoolVar(&o.Overwrite, "overwrite", false, "replace existing regular files and symlinks (in place: inode, links and xattrs stay)")
	f.BoolVarP(&o.DryRun, "dry-run", "n", false, "say exactly what would change and write nothing")
	f.StringVar(&o.Undo, "undo", "", "restore the bytes an injection overwrote, from its undo file")
	f.StringVar(&o.UndoFile, "undo-file", "", "where the undo file goes (default: next to the image, named after it and the time)")
}

func newInjectCommand(g *globalOptions) *cobra.Command {
	var o injectOptions
	c := &cobra.Command{
		Use:   "inject [flags] TARGET SRC... GUEST_DIR | inject --undo UNDOFILE",
		Short: "Write files into the disk of a VM that is shut off (ext2/3/4, NTFS), undoably",
		Long: `Write files, directories (recursively) and symlinks from this host into a
directory of a VM's disk while the VM is shut off: a fixed fstab, a key, a
config, a driver. TARGET is a libvirt domain (name or UUID; its disks come from
its XML) or a disk image (raw or qcow2; more images of the same VM with
--image). GUEST_DIR is a path as the mount shows it: /p1/etc with one disk,
/vda/p1/etc with several (` + "`vmmount ls TARGET /`" + ` lists the volumes).
Symlinks on the way are followed as the guest would (a merged /lib -> usr/lib;
absolute targets from the volume's root).

The filesystem is written in user space (ext2, ext3, ext4 and NTFS; raw
images in place, qcow2 images through their cluster tables with refcounts kept
right). New files get the source's permission bits (or --mode), owner 0:0 (or
--owner) and the source's modification time. --overwrite replaces existing
regular files and symlinks in place: the inode, its hard links and extended
attributes (SELinux labels) stay, and so do its mode and owner unless given.
New files get no SELinux label: on an SELinux guest, relabel them (restorecon,
or touch /.autorelabel). Directories given as SRC are merged into existing
ones.

Before anything is written, every byte about to be overwritten is saved into
an undo file (next to the image unless --undo-file), and everything written is
read back and checked; a failure at any point puts the image back as it was.
` + "`vmmount inject --undo UNDOFILE`" + ` later restores the image byte for byte,
unless it changed since (the VM ran). With --repo, a restore point of the VM is
taken first.

Refused, writing nothing (exit 5):
  - the domain is not shut off, or has a managed save image; the image is in
    use (QEMU's image locks, a running domain that uses it)
  - the filesystem needs journal recovery, has its error flag set or recorded
    errors, was not cleanly unmounted, or has orphans pending (boot the VM
    once, or run e2fsck, first)
  - features the writer does not maintain: bigalloc, quota, mmp, an external
    journal device, compression, dirdata, snapshot, shared_blocks, read-only,
    unknown features; encrypted or casefolded target directories; immutable,
    append-only, verity or encrypted files to replace
  - NTFS: a volume marked dirty, with a $LogFile not checkpointed, or
    hibernated (hiberfil.sys; Windows fast startup): shut Windows down fully
    (shutdown /s /t 0) first; compressed, encrypted or junction target
    directories; names Windows cannot use or sees as an existing one (case);
    replacing compressed, sparse, encrypted, reparse-point (symlink, WOF
    compressed) or system files, or files with an attribute list
  - LVM logical volumes, filesystems other than ext2/3/4 and NTFS (on NTFS:
    --owner, --mode and symlinks), image formats other than raw and qcow2,
    qcow2 images that are dirty, corrupt, encrypted, or have persistent dirty
    bitmaps, an external data file or extended L2 entries
  - images attached to a loop device on this host (it may have them mounted);
    not enough free space for the undo file or a growing qcow2 image
  - a name that exists without --overwrite, or of another type; device nodes,
    FIFOs and sockets as sources

` + exitCodeHelp,
		Args: argsRange(0, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.RestorePoint = cmd.Flags().Changed("repo")
			return runInject(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

func runInject(ctx context.Context, g *globalOptions, o *injectOptions, args []string) error {
	if o.Undo != "" {
		if len(args) > 0 {
			return usageError{errors.New("--undo takes only the undo file")}
		}
		return runUndo(ctx, g, o)
	}
	if len(args) < 3 {
		return usageError{errors.New("give TARGET, one or more SRC and GUEST_DIR")}
	}
	guestDir := args[len(args)-1]
	if !strings.HasPrefix(guestDir, "/") {
		return usageError{fmt.Errorf("GUEST_DIR %q must start with / (as the mount shows it: /p1/etc)", guestDir)}
	}
	opts := inject.Options{
		Sources:   args[1 : len(args)-1],
		GuestDir:  guestDir,
		Parents:   o.Parents,
		Overwrite: o.Overwrite,
		DryRun:    o.DryRun,
		UndoFile:  o.UndoFile,
		Tool:      "vmmount " + version,
		Notify:    func(m string) { g.verbosef("%s\n", m) },
	}
	target := args[0]
	if isHostFile(target) || strings.Contains(target, "/") {
		opts.Target = inject.Target{Images: append([]string{target}, o.Images...), Format: o.Format, URI: o.Connect}
	} else {
		if len(o.Images) > 0 || o.Format != "" {
			return usageError{errors.New("--image and --format go with an image TARGET, not a domain")}
		}
		opts.Target = inject.Target{Domain: target, URI: o.Connect}
	}
	if o.Owner != "" {
		u, gr, ok := strings.Cut(o.Owner, ":")
		uid, err1 := strconv.ParseUint(u, 10, 32)
		gid, err2 := strconv.ParseUint(gr, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return usageError{fmt.Errorf("--owner %q: want numeric UID:GID", o.Owner)}
		}
		opts.Owner = &inject.Owner{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if o.Mode != "" {
		m, err := strconv.ParseUint(o.Mode, 8, 16)
		if err != nil || m > 0o7777 {
			return usageError{fmt.Errorf("--mode %q: want octal permission bits (0644)", o.Mode)}
		}
		mode := uint16(m)
		opts.Mode = &mode
	}
	if o.RestorePoint && !o.DryRun {
		r, err := repo.OpenOrInit(g.Repo)
		if err != nil {
			return err
		}
		opts.Repo = r
	}
	res, err := inject.Run(ctx, opts)
	if err != nil {
		return injectError(err)
	}
	if g.JSON {
		return g.printJSON(res)
	}
	printInject(g, res)
	return nil
}

// injectError gives refusals their exit code.
func injectError(err error) error {
	if errors.Is(err, inject.ErrRefused) {
		return refusedError{err}
	}
	return err
}

func printInject(g *globalOptions, res *inject.Result) {
	verb := map[string]string{inject.ActCreate: "created", inject.ActReplace: "replaced", inject.ActMkdir: "made directory",
		inject.ActSymlink: "made symlink", inject.ActReplaceLink: "replaced symlink", inject.ActMerge: "merged into"}
	if res.DryRun {
		verb = map[string]string{inject.ActCreate: "would create", inject.ActReplace: "would replace", inject.ActMkdir: "would make directory",
			inject.ActSymlink: "would make symlink", inject.ActReplaceLink: "would replace symlink", inject.ActMerge: "would merge into"}
	}
	if res.RestorePoint != "" {
		g.printf("restore point %s taken first\n", res.RestorePoint)
	}
	for _, a := range res.Actions {
		switch a.Op {
		case inject.ActSymlink, inject.ActReplaceLink:
			g.printf("%s %s -> %s (inode %d, owner %d:%d)\n", verb[a.Op], escapeName(a.Path), escapeName(a.Target), a.Node, a.Uid, a.Gid)
		case inject.ActMkdir, inject.ActMerge:
			g.printf("%s %s (inode %d, mode %04o, owner %d:%d)\n", verb[a.Op], escapeName(a.Path), a.Node, a.Perm, a.Uid, a.Gid)
		default:
			g.printf("%s %s (%s, inode %d, mode %04o, owner %d:%d)\n", verb[a.Op], escapeName(a.Path), progress.Bytes(a.Size), a.Node, a.Perm, a.Uid, a.Gid)
		}
	}
	if res.DryRun || g.Debug {
		g.printf("in %s (%s) of %s (%s):\n", res.Volume, res.FS, res.Image, res.Format)
		for _, e := range res.Events {
			line := "  " + e.Op
			if e.Ino != 0 {
				line += fmt.Sprintf(" inode %d", e.Ino)
			}
			if e.Name != "" {
				line += " " + strconv.Quote(e.Name)
			}
			if e.Note != "" {
				line += " " + e.Note
			}
			if len(e.Blocks) > 0 {
				line += " blocks " + extents(e.Blocks)
			}
			if len(e.Freed) > 0 {
				line += " freeing " + extents(e.Freed)
			}
			g.printf("%s\n", line)
		}
		g.printf("byte ranges of the disk written:\n")
		for _, w := range res.Writes {
			g.printf("  %d+%d %s\n", w.Off, w.Len, w.Kind)
		}
	}
	what := "wrote"
	if res.DryRun {
		what = "would write"
	}
	g.printf("%s %s of metadata and %s of content into %s (%s) of %s\n", what, progress.Bytes(res.MetaBytes), progress.Bytes(res.DataBytes), res.Volume, res.FS, res.Image)
	for _, w := range res.Warnings {
		g.warnf("%s\n", w)
	}
	if res.UndoFile != "" {
		g.printf("undo file %s (%s); undo with: vmmount inject --undo %s\n", res.UndoFile, progress.Bytes(res.UndoBytes), res.UndoFile)
	}
}

func extents(l []extwrite.Extent) string {
	var s []string
	for i, e := range l {
		if i == 8 {
			s = append(s, fmt.Sprintf("... (%d runs)", len(l)))
			break
		}
		if e.Len == 1 {
			s = append(s, strconv.FormatUint(e.Start, 10))
		} else {
			s = append(s, fmt.Sprintf("%d-%d", e.Start, e.Start+e.Len-1))
		}
	}
	return strings.Join(s, ",")
}

func runUndo(ctx context.Context, g *globalOptions, o *injectOptions) error {
	uri := ""
	if o.Connect != inject.DefaultURI {
		uri = o.Connect
	}
	res, err := inject.Undo(ctx, o.Undo, inject.UndoOptions{URI: uri})
	if err != nil {
		return injectError(err)
	}
	if g.JSON {
		return g.printJSON(res)
	}
	switch {
	case res.AlreadyUndone:
		g.printf("%s already has the bytes it had before the injection (%s); nothing to do\n", res.Image, o.Undo)
	case res.Interrupted:
		g.printf("restored %d ranges (%s) of %s: the interrupted injection into %s is undone\n", res.Ranges, progress.Bytes(res.Bytes), res.Image, res.Volume)
	default:
		g.printf("restored %d ranges (%s) of %s: it is as before the injection into %s\n", res.Ranges, progress.Bytes(res.Bytes), res.Image, res.Volume)
	}
	return nil
}
