package testimages

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// builder creates the tree. Metadata that creating children would disturb
// (owners, modes that forbid writing, times) is recorded and applied by
// finish, in an order that leaves every entry exactly as chosen.
type builder struct {
	root string
	o    TreeOptions
	rng  *rand.Rand
	err  error

	ownerSets []ownerSet
	modeSets  []modeSet
	times     map[string]timeSet // by relative path
	order     []string           // paths in creation order, for times
}

type ownerSet struct {
	rel      string
	uid, gid int
}

type modeSet struct {
	rel  string
	mode os.FileMode // permission and setuid/setgid/sticky bits
}

type timeSet struct{ atime, mtime time.Time }

func newBuilder(root string, o TreeOptions) *builder {
	return &builder{
		root:  root,
		o:     o,
		rng:   rand.New(rand.NewPCG(o.Seed, 0x7465737469)),
		times: map[string]timeSet{},
	}
}

func (b *builder) path(rel string) string { return filepath.Join(b.root, filepath.FromSlash(rel)) }

func (b *builder) fail(rel string, err error) {
	if b.err == nil && err != nil {
		b.err = fmt.Errorf("RichTree %s: %w", rel, err)
	}
}

// stamp gives rel an ordinary time, overridden later by settime if needed.
func (b *builder) stamp(rel string) {
	if _, ok := b.times[rel]; !ok {
		b.order = append(b.order, rel)
	}
	lo := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	hi := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	m := b.round(time.Unix(0, lo+b.rng.Int64N(hi-lo)))
	a := b.round(m.Add(time.Duration(b.rng.Int64N(int64(400 * 24 * time.Hour)))))
	b.times[rel] = timeSet{atime: a, mtime: m}
}

func (b *builder) settime(rel string, atime, mtime time.Time) {
	if _, ok := b.times[rel]; !ok {
		b.order = append(b.order, rel)
	}
	b.times[rel] = timeSet{atime: b.round(atime), mtime: b.round(mtime)}
}

// round truncates t to the time step, in seconds and nanoseconds apart
// (a time.Duration overflows past 292 years from the epoch).
func (b *builder) round(t time.Time) time.Time {
	return roundTime(t, b.o.TimeStep)
}

func roundTime(t time.Time, step time.Duration) time.Time {
	sec, ns := t.Unix(), int64(t.Nanosecond())
	if step < time.Second {
		ns -= ns % int64(step)
	} else {
		s := int64(step / time.Second)
		sec -= ((sec % s) + s) % s
		ns = 0
	}
	return time.Unix(sec, ns).UTC()
}

func (b *builder) mkdir(rel string) {
	if b.err != nil {
		return
	}
	b.fail(rel, os.Mkdir(b.path(rel), 0o755))
	b.stamp(rel)
}

// content is the deterministic bytes of a file: a ChaCha8 stream keyed by
// the seed and the file's path.
func (b *builder) content(rel string) io.Reader {
	var seed [32]byte
	h := sha256.New()
	binary.Write(h, binary.LittleEndian, b.o.Seed)
	h.Write([]byte(rel))
	copy(seed[:], h.Sum(nil))
	return rand.NewChaCha8(seed)
}

// file writes size bytes of content.
func (b *builder) file(rel string, size int64) {
	if b.err != nil {
		return
	}
	f, err := os.OpenFile(b.path(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		b.fail(rel, err)
		return
	}
	if size > 0 {
		_, err = io.Copy(f, io.LimitReader(b.content(rel), size))
	}
	b.fail(rel, errors.Join(err, f.Close()))
	b.stamp(rel)
}

// fileBytes writes exactly data.
func (b *builder) fileBytes(rel string, data []byte) {
	if b.err != nil {
		return
	}
	b.fail(rel, os.WriteFile(b.path(rel), data, 0o644))
	b.stamp(rel)
}

// chunks writes content at the given offsets and sets the final size,
// leaving holes elsewhere.
func (b *builder) chunks(rel string, size int64, offs []int64, chunk int) {
	if b.err != nil {
		return
	}
	f, err := os.OpenFile(b.path(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		b.fail(rel, err)
		return
	}
	buf := make([]byte, chunk)
	src := b.content(rel)
	for _, off := range offs {
		io.ReadFull(src, buf)
		if _, err = f.WriteAt(buf, off); err != nil {
			break
		}
	}
	if err == nil {
		err = f.Truncate(size)
	}
	b.fail(rel, errors.Join(err, f.Close()))
	b.stamp(rel)
}

func (b *builder) symlink(target, rel string) {
	if b.err != nil {
		return
	}
	b.fail(rel, os.Symlink(target, b.path(rel)))
	b.stamp(rel)
}

func (b *builder) link(oldrel, rel string) {
	if b.err != nil {
		return
	}
	b.fail(rel, os.Link(b.path(oldrel), b.path(rel)))
	// The times belong to the inode: the first name's are kept.
}

func (b *builder) xattr(rel, name string, value []byte) {
	if b.err != nil {
		return
	}
	if err := unix.Lsetxattr(b.path(rel), name, value, 0); err != nil {
		b.fail(rel, fmt.Errorf("setxattr %s: %w", name, err))
	}
}

func (b *builder) chown(rel string, uid, gid int) {
	b.ownerSets = append(b.ownerSets, ownerSet{rel, uid, gid})
}

func (b *builder) chmod(rel string, mode os.FileMode) {
	b.modeSets = append(b.modeSets, modeSet{rel, mode})
}

// finish applies owners (chown clears setuid bits, so first), then modes,
// then times: non-directories first, then directories deepest first, so no
// later change touches an mtime already set.
func (b *builder) finish() {
	if b.err != nil {
		return
	}
	for _, s := range b.ownerSets {
		b.fail(s.rel, os.Lchown(b.path(s.rel), s.uid, s.gid))
	}
	for _, s := range b.modeSets {
		b.fail(s.rel, unix.Chmod(b.path(s.rel), uint32(s.mode)))
	}
	b.stamp(".")
	var dirs, others []string
	for _, rel := range b.order {
		fi, err := os.Lstat(b.path(rel))
		if err != nil {
			b.fail(rel, err)
			return
		}
		if fi.IsDir() {
			dirs = append(dirs, rel)
		} else {
			others = append(others, rel)
		}
	}
	slices.SortStableFunc(dirs, func(x, y string) int {
		return depth(y) - depth(x)
	})
	for _, rel := range append(others, dirs...) {
		t := b.times[rel]
		ts := []unix.Timespec{timespec(t.atime), timespec(t.mtime)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, b.path(rel), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			b.fail(rel, fmt.Errorf("utimensat: %w", err))
			return
		}
	}
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func depth(rel string) int {
	if rel == "." {
		return 0
	}
	return strings.Count(rel, "/") + 1
}
