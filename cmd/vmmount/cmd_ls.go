package main

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/internal/progress"
)

type lsOptions struct {
	imageFlags
	Long      bool
	Recursive bool
}

func (o *lsOptions) AddFlags(c *cobra.Command) {
	o.imageFlags.AddFlags(c)
	c.Flags().BoolVarP(&o.Long, "long", "l", false, "long listing: mode, links, uid, gid, size, mtime (UTC), symlink targets; for volumes their type, size, label, UUID")
	c.Flags().BoolVarP(&o.Recursive, "recursive", "R", false, "list subdirectories recursively")
}

func newLsCommand(g *globalOptions) *cobra.Command {
	var o lsOptions
	c := &cobra.Command{
		Use:   "ls [-l] [-R] [--json] IMAGE... [PATH]",
		Short: "List the volumes of disk images, or a directory inside them",
		Long: `List the volumes of one VM's disk images (PATH "/", the default), or a
directory or file inside a volume's filesystem. Names are sorted; names with
control characters, backslashes or bytes that are not UTF-8 are escaped as
ls -b does. --json prints an array of entries with every stat field.

` + pathArgHelp,
		Args: argsRange(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLs(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

// lsEntry is one entry of `ls --json`: a file (with its stat fields), a
// volume or a disk of the namespace.
type lsEntry struct {
	Name       string `json:"name"`
	Path       string `json:"path"`
	Type       string `json:"type"` // file, dir, symlink, char, block, fifo, socket; volume, disk
	ModeString string `json:"mode_string,omitempty"`
	*fsys.Stat
	Target string         `json:"target,omitempty"`
	Volume *fsread.Volume `json:"volume,omitempty"`
	Disk   *fsread.Disk   `json:"disk,omitempty"`
	Error  string         `json:"error,omitempty"`
}

type lister struct {
	ctx     context.Context
	g       *globalOptions
	o       *lsOptions
	set     *fsread.Set
	entries []lsEntry
	first   bool  // nothing printed yet
	err     error // the first error met while going on
}

func runLs(ctx context.Context, g *globalOptions, o *lsOptions, args []string) error {
	images, p, err := splitImagesPath(args, true)
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
	l := &lister{ctx: ctx, g: g, o: o, set: s.set, first: true}
	if vol == nil {
		err = l.namespace(s.set.Dir(p))
	} else {
		err = l.path(vol, rest, p)
	}
	if err != nil {
		return err
	}
	if g.JSON {
		if l.entries == nil {
			l.entries = []lsEntry{}
		}
		if err := g.printJSON(l.entries); err != nil {
			return err
		}
	}
	return l.err
}

// fail reports an error of one entry or directory and goes on, as ls does.
func (l *lister) fail(err error) {
	if l.err == nil {
		l.err = err
	}
	l.g.warnf("%v\n", err)
}

func (l *lister) header(p string) {
	if !l.o.Recursive || l.g.JSON {
		return
	}
	if !l.first {
		l.g.printf("\n")
	}
	l.first = false
	l.g.printf("%s:\n", escapeName(p))
}

// namespace lists a directory above the volumes: the disks (with several)
// and the volumes.
func (l *lister) namespace(d *fsread.Dir) error {
	l.header(d.Path)
	var rows [][]string
	for _, sub := range d.Dirs {
		if l.g.JSON {
			l.entries = append(l.entries, lsEntry{Name: sub.Name, Path: sub.Path, Type: "disk", Disk: sub.Disk})
			continue
		}
		if !l.o.Long {
			l.g.printf("%s\n", escapeName(sub.Name))
			continue
		}
		table := sub.Disk.Table
		if table == "" {
			table = "no partition table"
		}
		rows = append(rows, []string{escapeName(sub.Name) + "/", "disk", progress.Bytes(sub.Disk.Size), table, ""})
	}
	for _, v := range d.Volumes {
		if l.g.JSON {
			l.entries = append(l.entries, lsEntry{Name: v.Name, Path: v.Path, Type: "volume", Volume: v})
			continue
		}
		if !l.o.Long {
			l.g.printf("%s\n", v.Name)
			continue
		}
		note := ""
		if err := v.Err(); err != nil {
			note = "(" + strings.TrimPrefix(err.Error(), v.Path+": ") + ")"
		}
		rows = append(rows, []string{v.Name, v.FSType, progress.Bytes(v.Size), quoteLabel(v.Label), v.UUID, note})
	}
	printColumns(l.g, rows)
	if !l.o.Recursive {
		return nil
	}
	for _, sub := range d.Dirs {
		if err := l.namespace(sub); err != nil {
			return err
		}
	}
	for _, v := range d.Volumes {
		if !v.Readable() {
			continue
		}
		if err := l.path(v, ".", v.Path); err != nil {
			l.fail(err)
		}
	}
	return nil
}

func quoteLabel(s string) string {
	if s == "" {
		return "-"
	}
	return escapeName(s)
}

// printColumns prints rows with columns padded to their widest cell.
func printColumns(g *globalOptions, rows [][]string) {
	var w []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(w) {
				w = append(w, 0)
			}
			w[i] = max(w[i], len([]rune(c)))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", w[i]-len([]rune(c))))
			}
		}
		g.printf("%s\n", strings.TrimRight(b.String(), " "))
	}
}

// path lists rest inside a volume: a directory's entries, or one entry.
// shown is the path as the user wrote it.
func (l *lister) path(vol *fsread.Volume, rest, shown string) error {
	f, ffs, err := openFS(vol)
	if err != nil {
		return err
	}
	// ls -l shows a symlink named on the command line, ls follows it.
	ino, err := ffs.Resolve("ls", rest, !l.o.Long)
	if err != nil {
		return pathError(err, shown)
	}
	st, err := f.Stat(ino)
	if err != nil {
		return fmt.Errorf("%s: %w", shown, err)
	}
	full := joinPath(vol, rest)
	if !st.IsDir() {
		e := l.entry(f, path.Base(full), full, ino, st)
		l.print([]lsEntry{e}, shown)
		return nil
	}
	return l.dir(f, full, ino, map[uint64]bool{})
}

// dir lists one directory and, with -R, those below it. seen holds the
// directories on the way down, so a looping (damaged) tree stops.
func (l *lister) dir(f fsread.FileSystem, dirPath string, ino uint64, seen map[uint64]bool) error {
	if err := l.ctx.Err(); err != nil {
		return err
	}
	l.header(dirPath)
	list, err := f.ReadDir(ino)
	if err != nil {
		l.fail(fmt.Errorf("%s: %w", dirPath, err))
		return nil
	}
	slices.SortFunc(list, func(a, b fsys.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	var ents []lsEntry
	for _, d := range list {
		p := dirPath + "/" + d.Name
		if l.o.Long || l.g.JSON {
			st, err := f.Stat(d.Ino)
			if err != nil {
				l.fail(fmt.Errorf("%s: %w", p, err))
				ents = append(ents, lsEntry{Name: d.Name, Path: p, Type: "unknown", Error: err.Error()})
				continue
			}
			ents = append(ents, l.entry(f, d.Name, p, d.Ino, st))
		} else {
			ents = append(ents, lsEntry{Name: d.Name, Path: p})
		}
	}
	l.print(ents, "")
	if !l.o.Recursive {
		return nil
	}
	seen[ino] = true
	defer delete(seen, ino)
	for _, d := range list {
		if !d.Type.IsDir() || d.Name == "" || d.Name == "." || d.Name == ".." || strings.ContainsAny(d.Name, "/\x00") {
			continue
		}
		p := dirPath + "/" + d.Name
		if seen[d.Ino] {
			l.fail(fmt.Errorf("%s: directory loop (inode %d is its own ancestor): %w", p, d.Ino, fsys.ErrCorrupt))
			continue
		}
		if err := l.dir(f, p, d.Ino, seen); err != nil {
			return err
		}
	}
	return nil
}

func (l *lister) entry(f fsread.FileSystem, name, p string, ino uint64, st *fsys.Stat) lsEntry {
	e := lsEntry{Name: name, Path: p, Type: typeWord(st.Mode), ModeString: modeString(st.Mode), Stat: st}
	if st.Mode&fsys.S_IFMT == fsys.S_IFLNK {
		t, err := f.Readlink(ino)
		if err != nil {
			l.fail(fmt.Errorf("%s: %w", p, err))
			e.Error = err.Error()
		}
		e.Target = t
	}
	return e
}

// print writes entries as text (names, or ls -l rows); JSON is collected.
// single is the path to show for a lone non-directory entry.
func (l *lister) print(ents []lsEntry, single string) {
	if l.g.JSON {
		l.entries = append(l.entries, ents...)
		return
	}
	name := func(e lsEntry) string {
		if single != "" {
			return escapeName(single)
		}
		return escapeName(e.Name)
	}
	if !l.o.Long {
		for _, e := range ents {
			l.g.printf("%s\n", name(e))
		}
		return
	}
	var rows [][]string
	for _, e := range ents {
		if e.Stat == nil {
			rows = append(rows, []string{"??????????", "?", "?", "?", "?", "?", name(e)})
			continue
		}
		size := strconv.FormatInt(e.Size, 10)
		if isDevice(e.Mode) {
			size = devString(e.Rdev)
		}
		n := name(e)
		if e.Target != "" {
			n += " -> " + escapeName(e.Target)
		}
		rows = append(rows, []string{e.ModeString, strconv.FormatUint(uint64(e.Nlink), 10),
			strconv.FormatUint(uint64(e.Uid), 10), strconv.FormatUint(uint64(e.Gid), 10), size,
			e.Mtime.UTC().Format(lsTimeFormat), n})
	}
	printLongRows(l.g, rows)
}

// printLongRows aligns ls -l rows: numbers to the right, the name last.
func printLongRows(g *globalOptions, rows [][]string) {
	w := make([]int, 6)
	for _, r := range rows {
		for i := 0; i < 6; i++ {
			w[i] = max(w[i], len(r[i]))
		}
	}
	for _, r := range rows {
		g.printf("%-*s %*s %*s %*s %*s %s %s\n", w[0], r[0], w[1], r[1], w[2], r[2], w[3], r[3], w[4], r[4], r[5], r[6])
	}
}
