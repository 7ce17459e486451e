package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vmmount/vmmount/internal/progress"
	"github.com/vmmount/vmmount/restore"
)

type restoreFilesOptions struct {
	To           string
	Tar          string
	Overwrite    bool
	SkipExisting bool
	Xattrs       bool
	Parents      bool
	Format       string
}

func (o *restoreFilesOptions) AddFlags(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.To, "to", "", "directory to restore into (created if missing)")
	f.StringVar(&o.Tar, "tar", "", "write a pax tar stream to FILE (- for standard output) instead")
	f.BoolVar(&o.Overwrite, "overwrite", false, "replace entries that exist in the destination")
	f.BoolVar(&o.SkipExisting, "skip-existing", false, "keep entries that exist in the destination")
	f.BoolVar(&o.Xattrs, "xattrs", false, "restore extended attributes and ACLs (NTFS streams are user.* xattrs)")
	f.BoolVar(&o.Parents, "parents", false, "restore each PATH under its whole path (DEST/p1/etc/nginx) rather than its last component")
	f.StringVarP(&o.Format, "format", "f", "", "image format when SOURCE is images, instead of detecting it")
}

func newRestoreFilesCommand(g *globalOptions) *cobra.Command {
	var o restoreFilesOptions
	c := &cobra.Command{
		Use:   "files SOURCE PATH... (--to DEST | --tar FILE|-)",
		Short: "Restore guest files and directories into a directory or a tar stream",
		Long: `Restore guest files and directories, with everything below them, from SOURCE:
a restore point (VM/ID, VM/latest) or the disk images of one VM (existing
files, given first). PATH is the path the mount shows: /<volume>/<path>, e.g.
/p1/etc/nginx (/<disk>/<volume>/... with several disks, /<vg>-<lv>/... for
LVM); "/" or a disk stands for all its readable volumes. Each PATH goes to
DEST/<last component> (DEST/nginx), or with --parents to DEST/<whole path>.

What is kept: file content with sparse holes, mode, owner (when run as root),
atime and mtime with nanoseconds (directories get theirs after their
content), symlinks as symlinks, hardlinks as hardlinks among what is restored,
FIFOs, sockets and device nodes (devices as root). --xattrs adds extended
attributes (user.*, trusted.*, security.*) and POSIX ACLs; NTFS alternate
data streams are user.<stream> xattrs, as ntfs-3g shows them, so copying the
files back onto an ntfs-3g mount with rsync -X or cp --preserve=xattr makes
them streams again. NTFS attribute flags (system.ntfs_attrib*) are not kept.

Nothing is written outside DEST: DEST is resolved once, and every entry is
created relative to directories held open from there, never following a
symlink; a guest name that is not one path component (empty, ".", "..",
containing "/" or NUL) is refused and reported with its guest path. Names
with control characters are restored as they are and escaped in messages.

An existing name is refused before anything is written, unless --overwrite
(entries replaced, written under a temporary name and renamed over them;
directories merged) or --skip-existing (kept, counted as skipped).

--tar writes a pax archive instead (GNU tar and bsdtar read it): sparse files
in the GNU 1.0 sparse format, xattrs as SCHILY.xattr and ACLs as SCHILY.acl
records (extract with tar --xattrs --xattrs-include='*' --acls), hardlinks as
links. Sockets cannot be archived and are skipped.

An entry that cannot be restored is reported and the rest goes on; the exit
status is then 1. A full or read-only destination, or Ctrl-C, stops the
restore: the file being written is removed, never left truncated (a tar file
is removed whole).`,
		Args: argsRange(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestoreFiles(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

// filesReport is what `restore files --json` prints.
type filesReport struct {
	Source string `json:"source"`
	Dest   string `json:"dest,omitempty"`
	Tar    string `json:"tar,omitempty"`
	*restore.Summary
	Failed   []failedEntry `json:"failed,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
}

type failedEntry struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// maxReported bounds the failed entries kept for --json.
const maxReported = 1000

func runRestoreFiles(ctx context.Context, g *globalOptions, o *restoreFilesOptions, args []string) (err error) {
	if (o.To == "") == (o.Tar == "") {
		return usageError{errors.New("give either --to DEST or --tar FILE|-")}
	}
	if o.Overwrite && o.SkipExisting {
		return usageError{errors.New("--overwrite and --skip-existing exclude each other")}
	}
	if o.Tar != "" && o.SkipExisting {
		return usageError{errors.New("--skip-existing applies to --to")}
	}
	sources, paths := splitRestoreArgs(args)
	if len(sources) == 0 || len(paths) == 0 {
		return usageError{errors.New("give a restore point or images, then one or more paths starting with /")}
	}
	src, closeSrc, name, err := openFilesSource(ctx, g, o, sources)
	if err != nil {
		return err
	}
	defer closeSrc()
	items, warnings, err := src.Items(paths, o.Parents)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		g.warnf("%s\n", w)
	}

	rep := &filesReport{Source: name, Dest: o.To, Tar: o.Tar, Warnings: warnings}
	var mu sync.Mutex
	onError := func(guest string, err error) {
		fmt.Fprintf(g.stderr, "error: %s: %v\n", restore.ShowPath(guest), err)
		mu.Lock()
		if len(rep.Failed) < maxReported {
			rep.Failed = append(rep.Failed, failedEntry{Path: guest, Error: err.Error()})
		}
		mu.Unlock()
	}
	var prog progress.Progress
	if g.showProgress() {
		prog = progress.NewBar(g.stderr)
	}
	out := g.stdout
	if o.Tar != "" {
		rep.Summary, err = restoreTar(ctx, g, o, items, prog, onError)
		if o.Tar == "-" {
			out = g.stderr // the archive is on stdout
		}
	} else {
		existing := restore.Refuse
		switch {
		case o.Overwrite:
			existing = restore.Overwrite
		case o.SkipExisting:
			existing = restore.Skip
		}
		rep.Summary, err = restore.RestoreFiles(ctx, o.To, items, restore.FilesOptions{Existing: existing,
			Owners: os.Geteuid() == 0, Xattrs: o.Xattrs, Progress: prog, OnError: onError})
	}
	if rep.Summary == nil {
		return restoreError(err)
	}
	if g.JSON {
		enc := (&globalOptions{stdout: out}).printJSON
		if jerr := enc(rep); jerr != nil && err == nil {
			err = jerr
		}
	} else if !g.Quiet || err != nil || rep.Errors > 0 {
		s := rep.Summary
		where := o.To
		if o.Tar != "" {
			where = "tar " + o.Tar
		}
		fmt.Fprintf(out, "%s -> %s: %d files (%s), %d directories, %d symlinks, %d hardlinks, %d special; %d skipped, %d errors\n",
			name, where, s.Files, progress.Bytes(s.Bytes), s.Dirs, s.Symlinks, s.Hardlinks, s.Special, s.Skipped, s.Errors)
		if s.Stopped != "" {
			fmt.Fprintf(out, "stopped: %s\n", s.Stopped)
		}
	}
	if err != nil {
		return err
	}
	if rep.Errors > 0 {
		return fmt.Errorf("%d entries could not be restored", rep.Errors)
	}
	return nil
}

// splitRestoreArgs separates the sources (a point, or image files that
// exist) from the guest paths (the arguments from the first one that
// starts with "/" and is not a file on this host).
func splitRestoreArgs(args []string) (sources, paths []string) {
	for i, a := range args {
		if strings.HasPrefix(a, "/") && !isHostImage(a) && i > 0 {
			return args[:i], args[i:]
		}
	}
	return args, nil
}

// isHostImage says whether name is a file or block device here.
func isHostImage(name string) bool {
	st, err := os.Stat(name)
	return err == nil && (st.Mode().IsRegular() || st.Mode()&os.ModeDevice != 0)
}

// openFilesSource opens a restore point, or the images, as the source.
func openFilesSource(ctx context.Context, g *globalOptions, o *restoreFilesOptions, sources []string) (*restore.Source, func(), string, error) {
	if len(sources) == 1 && !isHostImage(sources[0]) {
		if o.Format != "" {
			return nil, nil, "", usageError{errors.New("--format applies to images, not to restore points")}
		}
		p, err := openRestorePoint(ctx, g, sources[0])
		if err != nil {
			return nil, nil, "", err
		}
		src, err := restore.PointSource(ctx, p)
		if err != nil {
			p.Close()
			return nil, nil, "", err
		}
		return src, func() { src.Close(); p.Close() }, p.Point.Ref(), nil
	}
	for _, s := range sources {
		if !isHostImage(s) {
			return nil, nil, "", fmt.Errorf("%s: not an image file here, and several sources must all be images: %w", s, os.ErrNotExist)
		}
	}
	src, err := restore.ImageSource(ctx, sources, o.Format)
	if err != nil {
		return nil, nil, "", err
	}
	return src, func() { src.Close() }, strings.Join(sources, " "), nil
}

// restoreTar writes the archive to standard output, or to a file created
// under a temporary name and renamed when complete (removed on failure).
func restoreTar(ctx context.Context, g *globalOptions, o *restoreFilesOptions, items []restore.Item,
	prog progress.Progress, onError func(string, error)) (*restore.Summary, error) {
	opts := restore.TarOptions{Xattrs: o.Xattrs, Progress: prog, OnError: onError}
	if o.Tar == "-" {
		if f, ok := g.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return nil, usageError{errors.New("--tar -: standard output is a terminal; redirect it")}
		}
		return restore.WriteTar(ctx, g.stdout, items, opts)
	}
	if _, err := os.Lstat(o.Tar); err == nil && !o.Overwrite {
		return nil, refusedError{fmt.Errorf("%s exists; use --overwrite to replace it", o.Tar)}
	}
	f, err := os.CreateTemp(filepath.Dir(o.Tar), "."+filepath.Base(o.Tar)+".vmmount-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	sum, err := restore.WriteTar(ctx, f, items, opts)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, o.Tar)
	}
	if err != nil {
		os.Remove(tmp)
		if sum != nil && sum.Stopped == "" {
			sum.Stopped = err.Error()
		}
	}
	return sum, err
}
