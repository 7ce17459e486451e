package inject

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmmount/vmmount/backup"
	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/inject/extwrite"
)

// Target is what Run writes into: a libvirt domain of this host, or the
// image files of one VM.
type Target struct {
	// Domain is a libvirt domain's name or UUID; its disks come from its
	// XML.
	Domain string
	// URI is the libvirt connection; "" means DefaultURI. With Images it
	// is used, when libvirtd answers, to refuse images a running domain
	// uses.
	URI string
	// Images are the disk images of one VM, when Domain is empty.
	Images []string
	// Format forces the images' format ("raw" or "qcow2").
	Format string
}

// Owner is a numeric owner.
type Owner struct{ Uid, Gid uint32 }

// Options say what Run injects and how.
type Options struct {
	Target Target
	// Sources are host files, directories (copied recursively) and
	// symlinks (copied as symlinks).
	Sources []string
	// GuestDir is the directory as the mount shows it: /p1/etc, or
	// /vda/p1/etc with several disks.
	GuestDir string
	// Owner of what is created (default 0:0) and of replaced files (kept
	// by default).
	Owner *Owner
	// Mode is the permission bits (07777) of injected regular files;
	// nil takes the source's for new files and keeps a replaced file's.
	Mode *uint16
	// Parents makes missing directories of GuestDir (0755).
	Parents bool
	// Overwrite replaces existing regular files and symlinks in place.
	Overwrite bool
	// DryRun plans everything and writes nothing.
	DryRun bool
	// UndoFile is where the undo file goes; "" puts it next to the
	// image, named after it and the time.
	UndoFile string
	// Repo, when set, gets a restore point of the VM before anything is
	// written.
	Repo *repo.Repo
	// Tool is recorded in the undo file and the restore point.
	Tool string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Notify, if set, receives progress messages.
	Notify func(msg string)
}

// Result says what Run did (or would do, with DryRun).
type Result struct {
	DryRun bool   `json:"dry_run,omitempty"`
	Image  string `json:"image"`
	Format string `json:"format"`
	Volume string `json:"volume"` // /p1
	FS     string `json:"fs"`
	// Actions are the files, directories and symlinks written.
	Actions []Action `json:"actions"`
	// Events are the writer's changes in detail: inodes, directory
	// blocks, htree splits, blocks allocated and freed.
	Events []extwrite.Event `json:"events"`
	// Writes are the byte ranges of the image's guest view that change.
	Writes       []Range  `json:"writes"`
	MetaBytes    int64    `json:"metadata_bytes"`
	DataBytes    int64    `json:"data_bytes"`
	UndoFile     string   `json:"undo_file,omitempty"`
	UndoBytes    int64    `json:"undo_bytes,omitempty"`
	RestorePoint string   `json:"restore_point,omitempty"`
	Warnings     []string `json:"warnings,omitempty"`
}

// Range is a byte range of a disk's guest view.
type Range struct {
	Off  int64  `json:"offset"`
	Len  int64  `json:"length"`
	Kind string `json:"kind"` // metadata or data
}

func (o *Options) notify(format string, args ...any) {
	if o.Notify != nil {
		o.Notify(fmt.Sprintf(format, args...))
	}
}

// Run injects the sources into the guest directory of a VM that is shut
// off, with every guard, the undo file and verification; see the package
// documentation.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if len(o.Sources) == 0 {
		return nil, errors.New("no source to inject")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	for _, s := range o.Sources {
		if filepath.Base(filepath.Clean(s)) == "/" {
			return nil, fmt.Errorf("source %q: name a file or directory, not /", s)
		}
		// Before a restore point is taken or anything locked.
		if _, err := os.Lstat(s); err != nil {
			return nil, err
		}
	}
	t, err := openTarget(ctx, &o)
	if err != nil {
		return nil, err
	}
	defer t.close()
	res = &Result{DryRun: o.DryRun, Warnings: t.warnings}

	if o.Repo != nil && !o.DryRun {
		ref, err := t.restorePoint(ctx, &o)
		if err != nil {
			return res, fmt.Errorf("restore point before injecting: %w", err)
		}
		res.RestorePoint = ref
		o.notify("restore point %s taken", ref)
	}
	if err := t.lock(ctx); err != nil {
		return res, err
	}
	vol, err := t.volume(ctx, o.GuestDir)
	if err != nil {
		return res, err
	}
	res.Image, res.Format, res.Volume, res.FS = vol.disk.path, vol.disk.format, vol.path, vol.fsType

	w, err := vol.writer(o.Now())
	if err != nil {
		return res, err
	}
	p := &planner{ctx: ctx, w: w, o: &o, volPath: vol.path, now: o.Now()}
	dir, dirRel, err := p.resolveDir(vol.rest)
	if err != nil {
		return res, err
	}
	for _, s := range o.Sources {
		abs, err := filepath.Abs(s)
		if err != nil {
			return res, err
		}
		if err := p.add(dir, dirRel, filepath.Base(abs), abs, 0); err != nil {
			return res, err
		}
	}
	if err := p.finishDirs(); err != nil {
		return res, err
	}
	if err := w.Finish(); err != nil {
		return res, err
	}
	chs, err := w.Changes()
	if err != nil {
		return res, err
	}
	res.Actions, res.Events = p.actions, w.Events()
	for _, c := range chs {
		kind := "data"
		if c.Src == nil {
			kind = "metadata"
			res.MetaBytes += c.Len
		} else {
			res.DataBytes += c.Len
		}
		res.Writes = appendRange(res.Writes, Range{Off: vol.off + c.Off, Len: c.Len, Kind: kind})
	}
	if o.DryRun {
		return res, nil
	}
	undoPath := o.UndoFile
	if undoPath == "" {
		undoPath = defaultUndoPath(vol.disk.path, o.Now())
	}
	hdr := &undoHeader{Version: 1, Created: o.Now().UTC(), Tool: o.Tool, Domain: t.domainName, URI: t.uri,
		Volume: vol.path, VolumeOff: vol.off, VolumeSize: vol.size, FSType: vol.fsType,
		Description: describe(p.actions)}
	res.UndoFile = undoPath
	o.notify("writing %d bytes of metadata and %d bytes of content into %s (%s), undo file %s", res.MetaBytes, res.DataBytes, vol.path, vol.disk.path, undoPath)
	if err := vol.commit(ctx, hdr, undoPath, chs, p.checks); err != nil {
		return res, err
	}
	if st, err := os.Stat(undoPath); err == nil {
		res.UndoBytes = st.Size()
	}
	return res, nil
}

// appendRange adds r, merging it with the last range when adjacent and of
// the same kind.
func appendRange(l []Range, r Range) []Range {
	if k := len(l); k > 0 && l[k-1].Kind == r.Kind && l[k-1].Off+l[k-1].Len == r.Off {
		l[k-1].Len += r.Len
		return l
	}
	return append(l, r)
}

// defaultUndoPath is next to the image: <image>.inject-<UTC time>.undo,
// with a number added if that name is taken.
func defaultUndoPath(image string, t time.Time) string {
	base := image + ".inject-" + t.UTC().Format("20060102T150405.000Z")
	p := base + ".undo"
	for i := 2; i < 1000; i++ {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			break
		}
		p = fmt.Sprintf("%s-%d.undo", base, i)
	}
	return p
}

func describe(acts []Action) string {
	var s []string
	for _, a := range acts {
		s = append(s, a.Op+" "+a.Path)
		if len(s) == 20 {
			s = append(s, fmt.Sprintf("and %d more", len(acts)-20))
			break
		}
	}
	return strings.Join(s, ", ")
}

// restorePoint backs the VM up into o.Repo before anything is written.
func (t *target) restorePoint(ctx context.Context, o *Options) (string, error) {
	var src backup.Source
	if t.domainName != "" {
		src = &backup.Domain{URI: t.uri, Name: t.domainName, Mode: backup.ModeOffline,
			Notify: func(m string) { o.notify("%s", m) }}
	} else {
		s := &backup.Images{Name: fsread.DiskName(t.disks[0].path)}
		for _, d := range t.disks {
			s.Disks = append(s.Disks, backup.ImageDisk{Target: d.name, Path: d.path, Format: d.format})
		}
		src = s
	}
	if d, ok := src.(*backup.Domain); ok {
		defer d.Close()
	}
	res, err := backup.Run(ctx, o.Repo, src, backup.Options{Tool: o.Tool})
	if err != nil {
		if errors.Is(err, backup.ErrVMState) || errors.Is(err, repo.ErrLocked) {
			return "", asRefusal(err)
		}
		return "", err
	}
	return res.Point.Ref(), nil
}

// imageOpener opens backing files for qcow2.RW with every format imagefmt
// reads.
func imageOpener(name, format string) (imagefmt.Image, error) {
	return imagefmt.OpenWith(name, imagefmt.Options{Format: format})
}

var _ = io.EOF
