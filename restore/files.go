package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/internal/progress"
)

// Existing says what a file restore does with a name that already exists
// in the destination.
type Existing int

const (
	// Refuse: the restore is refused before anything is written when the
	// name of any item exists; a name deeper down that appears meanwhile
	// is an error of that entry.
	Refuse Existing = iota
	// Overwrite replaces existing entries (written under a temporary name
	// and renamed over them) and merges into existing directories,
	// setting their metadata. A directory is never replaced by a file.
	Overwrite
	// Skip keeps existing entries and counts them as skipped; existing
	// directories are merged into, their metadata kept.
	Skip
)

// FilesOptions control a file restore.
type FilesOptions struct {
	Existing Existing
	// Owners sets each entry's uid and gid (needs root); otherwise the
	// restoring user owns everything.
	Owners bool
	// Xattrs restores extended attributes: user.*, trusted.*, security.*
	// and POSIX ACLs. NTFS alternate data streams are user.<stream>
	// xattrs (as ntfs-3g shows them), so they come back this way too.
	Xattrs bool
	// Workers copying file content in parallel; 0 means 4.
	Workers int
	// Progress receives the bytes of file content written.
	Progress progress.Progress
	// OnError is called for each entry that could not be restored, with
	// its guest path; calls are serialized. The restore goes on.
	OnError func(guest string, err error)
}

// Summary counts what a restore did.
type Summary struct {
	Files     int64 `json:"files"`
	Dirs      int64 `json:"dirs"`
	Symlinks  int64 `json:"symlinks"`
	Hardlinks int64 `json:"hardlinks"`
	Special   int64 `json:"special"` // FIFOs, sockets, devices
	Bytes     int64 `json:"bytes"`   // file content
	Skipped   int64 `json:"skipped"` // existing names kept (Skip), sockets in tar
	Errors    int64 `json:"errors"`
	// Stopped says why the restore ended early (interrupted, target full),
	// empty when it ran to the end.
	Stopped string `json:"stopped,omitempty"`
}

type counters struct {
	files, dirs, symlinks, hardlinks, special, bytes, skipped, errors atomic.Int64
}

func (c *counters) summary() *Summary {
	return &Summary{Files: c.files.Load(), Dirs: c.dirs.Load(), Symlinks: c.symlinks.Load(),
		Hardlinks: c.hardlinks.Load(), Special: c.special.Load(), Bytes: c.bytes.Load(),
		Skipped: c.skipped.Load(), Errors: c.errors.Load()}
}

// EntryError is why one guest entry was not restored.
type EntryError struct {
	Guest string
	Err   error
}

func (e *EntryError) Error() string { return ShowPath(e.Guest) + ": " + e.Err.Error() }
func (e *EntryError) Unwrap() error { return e.Err }

// ExistsError lists the items whose names exist in the destination when
// Existing is Refuse. It wraps ErrExists.
type ExistsError struct{ Paths []string }

func (e *ExistsError) Error() string {
	return fmt.Sprintf("%s already exist(s); use --overwrite or --skip-existing", strings.Join(e.Paths, ", "))
}
func (e *ExistsError) Unwrap() error { return ErrExists }

// RestoreFiles restores items below the directory dest (created, mode
// 0700, if missing). dest is resolved once; everything is written relative
// to its file descriptor without following symlinks, so nothing lands
// outside it whatever the guest names, symlinks or a concurrent writer in
// dest do. Each entry gets its mode, owner (with Owners), atime and mtime
// with nanoseconds, and xattrs (with Xattrs); directories get theirs after
// their content. Symlinks are restored as symlinks, FIFOs, sockets and
// devices as such, hardlinks as hardlinks among the entries restored, and
// sparse files with their holes.
//
// An entry that fails is reported through OnError and counted; the rest
// goes on. The error returned is for the restore as a whole: dest unusable,
// existing names (ExistsError), a full or read-only target, or ctx
// cancelled. A file being written when the restore stops is removed, never
// left truncated; what was completed stays. The summary is returned in
// every case but the refusals.
func RestoreFiles(ctx context.Context, dest string, items []Item, o FilesOptions) (*Summary, error) {
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return nil, err
	}
	root, err := unix.Open(dest, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dest, Err: err}
	}
	defer unix.Close(root)
	if o.Workers <= 0 {
		o.Workers = 4
	}
	r := &restorer{o: o, root: root, prog: progress.OrNop(o.Progress), links: map[inodeKey]*linkState{},
		dirsSeen: map[inodeKey]bool{}}
	if o.Existing == Refuse {
		if err := r.refuseExisting(items); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.cancel = cancel
	r.jobs = make(chan *fileJob, 4*o.Workers)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{r: r, buf: make([]byte, copyBuf)}
			for j := range r.jobs {
				w.run(ctx, j)
			}
		}()
	}
	r.prog.Start("restoring files", 0)
	top := &dirState{fd: root, top: true}
	top.pending.Store(1)
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		r.item(ctx, top, it)
	}
	close(r.jobs)
	wg.Wait()
	r.prog.Finish()
	s := r.c.summary()
	if cause := context.Cause(ctx); cause != nil {
		s.Stopped = cause.Error()
		if errors.Is(cause, context.Canceled) {
			s.Stopped = "interrupted"
		}
		return s, cause
	}
	return s, nil
}

// refuseExisting checks every item's name before anything is written.
func (r *restorer) refuseExisting(items []Item) error {
	var exist []string
	for _, it := range items {
		dirfd, err := openBeneath(r.root, strings.Join(it.Rel[:len(it.Rel)-1], "/"))
		if err != nil {
			continue // a missing parent: nothing below it exists
		}
		if _, err := lstatAt(dirfd, it.Rel[len(it.Rel)-1]); err == nil {
			exist = append(exist, strings.Join(it.Rel, "/"))
		}
		unix.Close(dirfd)
	}
	if len(exist) > 0 {
		return &ExistsError{Paths: exist}
	}
	return nil
}

// restorer is one file restore's state.
type restorer struct {
	o      FilesOptions
	root   int
	prog   progress.Progress
	c      counters
	jobs   chan *fileJob
	cancel context.CancelCauseFunc

	errMu sync.Mutex

	linkMu sync.Mutex
	links  map[inodeKey]*linkState

	dirsSeen map[inodeKey]bool // walker only
}

// inodeKey identifies a guest inode across the filesystems of a restore.
type inodeKey struct {
	fs  fsys.FileSystem
	ino uint64
}

// fail reports an entry's error, or stops the restore when the error is
// about the destination as a whole.
func (r *restorer) fail(guest string, err error) {
	if isDevErr(err) {
		r.cancel(fmt.Errorf("restore stopped at %s: %w", ShowPath(guest), err))
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	r.c.errors.Add(1)
	if r.o.OnError != nil {
		r.errMu.Lock()
		r.o.OnError(guest, err)
		r.errMu.Unlock()
	}
}

// dirState is a directory being filled. pending counts what must finish
// before its metadata is set: the walker listing it, each file job and
// hardlink waiting in it, each child directory.
type dirState struct {
	fd      int
	rel     string // path below DEST, for hardlinks ("" for DEST)
	guest   string
	st      *fsys.Stat // metadata to set at the end; nil keeps the host's
	fs      fsys.FileSystem
	ino     uint64
	parent  *dirState
	pending atomic.Int64
	top     bool // DEST itself: never closed here
}

func (d *dirState) hold() { d.pending.Add(1) }

// release drops one hold; the last one sets the directory's metadata,
// closes it and releases its parent.
func (r *restorer) release(d *dirState) {
	for d != nil && d.pending.Add(-1) == 0 {
		if d.top {
			return
		}
		if d.st != nil {
			if err := r.setMeta(d.fd, d.st, d.fs, d.ino, true); err != nil {
				r.fail(d.guest, err)
			}
		}
		unix.Close(d.fd)
		d = d.parent
	}
}

func relJoin(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
