package inject

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Actions a Result lists.
const (
	ActCreate      = "create"       // a new regular file
	ActReplace     = "replace"      // a regular file's content, in place
	ActMkdir       = "mkdir"        // a new directory (from a source or --parents)
	ActSymlink     = "symlink"      // a new symlink
	ActReplaceLink = "replace-link" // a symlink's target, in place
	ActMerge       = "merge"        // a source directory into an existing one
)

// Action is one thing done (or, with DryRun, to be done) in the guest
// filesystem.
type Action struct {
	Op   string `json:"op"`
	Path string `json:"path"` // as the mount shows it: /p1/etc/fstab
	// Source is the host file, "" for directories made by --parents.
	Source string `json:"source,omitempty"`
	Node   uint64 `json:"inode"`
	Size   int64  `json:"size"`
	Perm   uint16 `json:"perm"`
	Uid    uint32 `json:"uid"`
	Gid    uint32 `json:"gid"`
	Target string `json:"target,omitempty"` // symlinks
}

// maxSourceDepth bounds the recursion into source directories.
const maxSourceDepth = 256

// planner turns the sources into writer operations.
type planner struct {
	ctx     context.Context
	w       fsWriter
	o       *Options
	volPath string // "/p1": the volume's path in the namespace
	now     time.Time
	actions []Action
	checks  []check
	// dirTimes are directories made from sources whose times are set
	// last (adding entries changes them).
	dirTimes []dirTime
}

type dirTime struct {
	node         uint64
	atime, mtime time.Time
}

// check is what verification expects of one written path.
type check struct {
	rel    string // path inside the volume ("etc/fstab")
	kind   uint16
	perm   uint16
	uid    uint32
	gid    uint32
	size   int64
	target string
	src    *hostContent // regular files
}

// maxLinks bounds the symlinks followed resolving GuestDir (the kernel's
// MAXSYMLINKS).
const maxLinks = 40

// resolveDir walks the guest directory from the volume root, making
// missing components with --parents. Symlinks on the way are followed as
// the guest would (a merged /lib -> usr/lib): relative targets from their
// directory, absolute ones from the volume's root, ".." never above it.
// rel is the resolved path, which the actions show.
func (p *planner) resolveDir(rest string) (uint64, string, error) {
	type step struct {
		node uint64
		rel  string
	}
	stack := []step{{p.w.Root(), ""}}
	comps := splitPath(rest)
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		cur := stack[len(stack)-1]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		rel := path.Join(cur.rel, c)
		child, err := p.w.Lookup(cur.node, c)
		switch {
		case errors.Is(err, errNoEntry):
			if !p.o.Parents {
				return 0, "", notFoundErr{fmt.Errorf("%s: no such directory (--parents makes it)", p.guest(rel))}
			}
			a := attr{Perm: 0o755, Atime: p.now, Mtime: p.now}
			a.Uid, a.Gid = p.owner()
			if child, err = p.w.Mkdir(cur.node, c, a); err != nil {
				return 0, "", fmt.Errorf("%s: %w", p.guest(rel), err)
			}
			p.actions = append(p.actions, Action{Op: ActMkdir, Path: p.guest(rel), Node: child, Perm: 0o755, Uid: a.Uid, Gid: a.Gid})
			p.checks = append(p.checks, check{rel: rel, kind: modeDir, perm: 0o755, uid: a.Uid, gid: a.Gid})
		case err != nil:
			return 0, "", fmt.Errorf("%s: %w", p.guest(rel), err)
		default:
			st, err := p.w.Stat(child)
			if err != nil {
				return 0, "", fmt.Errorf("%s: %w", p.guest(rel), err)
			}
			if st.kind() == modeLink {
				lr, ok := p.w.(linkReader)
				if !ok {
					return 0, "", refusef("%s is a symlink, not a directory (symlinks of this filesystem are not followed)", p.guest(rel))
				}
				if links++; links > maxLinks {
					return 0, "", refusef("%s: more than %d symlinks on the way", p.guest(rel), maxLinks)
				}
				target, err := lr.Readlink(child)
				if err != nil {
					return 0, "", fmt.Errorf("%s: %w", p.guest(rel), err)
				}
				if strings.HasPrefix(target, "/") {
					stack = stack[:1]
				}
				comps = append(splitPath(target), comps...)
				continue
			}
			if st.kind() != modeDir {
				return 0, "", refusef("%s is not a directory", p.guest(rel))
			}
		}
		stack = append(stack, step{child, rel})
	}
	last := stack[len(stack)-1]
	return last.node, last.rel, nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

func (p *planner) guest(rel string) string {
	if rel == "" {
		return p.volPath
	}
	return path.Join(p.volPath, rel)
}

func (p *planner) owner() (uint32, uint32) {
	if p.o.Owner != nil {
		return p.o.Owner.Uid, p.o.Owner.Gid
	}
	return 0, 0
}

// add injects one host path as name into dir.
func (p *planner) add(dir uint64, dirRel, name, host string, depth int) error {
	if err := p.ctx.Err(); err != nil {
		return err
	}
	if depth > maxSourceDepth {
		return fmt.Errorf("%s: source tree deeper than %d", host, maxSourceDepth)
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return err
	}
	rel := path.Join(dirRel, name)
	existing, err := p.w.Lookup(dir, name)
	if err != nil && !errors.Is(err, errNoEntry) {
		return fmt.Errorf("%s: %w", p.guest(rel), err)
	}
	var cur *nodeInfo
	if err == nil {
		st, err := p.w.Stat(existing)
		if err != nil {
			return fmt.Errorf("%s: %w", p.guest(rel), err)
		}
		cur = &st
	}
	atime, mtime := fileTimes(fi)
	uid, gid := p.owner()
	switch {
	case fi.IsDir():
		node := existing
		if cur != nil {
			if cur.kind() != modeDir {
				return refusef("%s exists and is not a directory (the source %s is one)", p.guest(rel), host)
			}
			p.actions = append(p.actions, Action{Op: ActMerge, Path: p.guest(rel), Source: host, Node: node, Perm: cur.Mode & 0o7777, Uid: cur.Uid, Gid: cur.Gid})
		} else {
			perm := unixPerm(fi.Mode())
			if node, err = p.w.Mkdir(dir, name, attr{Perm: perm, Uid: uid, Gid: gid, Atime: atime, Mtime: mtime}); err != nil {
				return fmt.Errorf("%s: %w", p.guest(rel), err)
			}
			p.actions = append(p.actions, Action{Op: ActMkdir, Path: p.guest(rel), Source: host, Node: node, Perm: perm, Uid: uid, Gid: gid})
			p.checks = append(p.checks, check{rel: rel, kind: modeDir, perm: perm, uid: uid, gid: gid})
			p.dirTimes = append(p.dirTimes, dirTime{node, atime, mtime})
		}
		ents, err := os.ReadDir(host)
		if err != nil {
			return err
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			if err := p.add(node, rel, e.Name(), filepath.Join(host, e.Name()), depth+1); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode().IsRegular():
		c := &hostContent{path: host, size: fi.Size(), mtime: fi.ModTime()}
		perm := unixPerm(fi.Mode())
		if p.o.Mode != nil {
			perm = *p.o.Mode
		}
		if cur != nil {
			if !p.o.Overwrite {
				return refusef("%s exists (--overwrite replaces it)", p.guest(rel))
			}
			if cur.kind() != modeReg {
				return refusef("%s exists and is not a regular file; only regular files and symlinks are replaced", p.guest(rel))
			}
			ra := replaceAttr{Atime: atime, Mtime: mtime}
			if p.o.Mode != nil {
				ra.Perm = p.o.Mode
			} else {
				perm = cur.Mode & 0o7777
			}
			if p.o.Owner != nil {
				ra.Uid, ra.Gid = &p.o.Owner.Uid, &p.o.Owner.Gid
			} else {
				uid, gid = cur.Uid, cur.Gid
			}
			if err := p.w.Replace(existing, c, ra); err != nil {
				return fmt.Errorf("%s: %w", p.guest(rel), err)
			}
			p.actions = append(p.actions, Action{Op: ActReplace, Path: p.guest(rel), Source: host, Node: existing, Size: c.size, Perm: perm, Uid: uid, Gid: gid})
		} else {
			node, err := p.w.Create(dir, name, attr{Perm: perm, Uid: uid, Gid: gid, Atime: atime, Mtime: mtime}, c)
			if err != nil {
				return fmt.Errorf("%s: %w", p.guest(rel), err)
			}
			p.actions = append(p.actions, Action{Op: ActCreate, Path: p.guest(rel), Source: host, Node: node, Size: c.size, Perm: perm, Uid: uid, Gid: gid})
		}
		p.checks = append(p.checks, check{rel: rel, kind: modeReg, perm: perm, uid: uid, gid: gid, size: c.size, src: c})
		return nil
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(host)
		if err != nil {
			return err
		}
		if cur != nil {
			if !p.o.Overwrite {
				return refusef("%s exists (--overwrite replaces it)", p.guest(rel))
			}
			if cur.kind() != modeLink {
				return refusef("%s exists and is not a symlink (the source %s is one)", p.guest(rel), host)
			}
			ra := replaceAttr{Atime: atime, Mtime: mtime}
			if p.o.Owner != nil {
				ra.Uid, ra.Gid = &p.o.Owner.Uid, &p.o.Owner.Gid
			} else {
				uid, gid = cur.Uid, cur.Gid
			}
			if err := p.w.ReplaceSymlink(existing, target, ra); err != nil {
				return fmt.Errorf("%s: %w", p.guest(rel), err)
			}
			p.actions = append(p.actions, Action{Op: ActReplaceLink, Path: p.guest(rel), Source: host, Node: existing, Size: int64(len(target)), Perm: 0o777, Uid: uid, Gid: gid, Target: target})
		} else {
			node, err := p.w.Symlink(dir, name, target, attr{Perm: 0o777, Uid: uid, Gid: gid, Atime: atime, Mtime: mtime})
			if err != nil {
				return fmt.Errorf("%s: %w", p.guest(rel), err)
			}
			p.actions = append(p.actions, Action{Op: ActSymlink, Path: p.guest(rel), Source: host, Node: node, Size: int64(len(target)), Perm: 0o777, Uid: uid, Gid: gid, Target: target})
		}
		p.checks = append(p.checks, check{rel: rel, kind: modeLink, perm: 0o777, uid: uid, gid: gid, size: int64(len(target)), target: target})
		return nil
	}
	return refusef("%s: %s; only regular files, directories and symlinks are injected", host, fileKind(fi.Mode()))
}

// finishDirs gives directories made from sources their source's times,
// now that their entries are in.
func (p *planner) finishDirs() error {
	for i := len(p.dirTimes) - 1; i >= 0; i-- {
		d := p.dirTimes[i]
		if err := p.w.SetAttr(d.node, replaceAttr{Atime: d.atime, Mtime: d.mtime}); err != nil {
			return err
		}
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeDevice != 0:
		return "a device node"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file"
}

// unixPerm converts Go's mode bits to the inode's 07777.
func unixPerm(m fs.FileMode) uint16 {
	p := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// fileTimes returns a host file's atime and mtime.
func fileTimes(fi fs.FileInfo) (time.Time, time.Time) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atim.Sec, st.Atim.Nsec), fi.ModTime()
	}
	return fi.ModTime(), fi.ModTime()
}

// hostContent is a host file read when the changes are written. Each read
// opens it and checks that it still has the size and mtime it had when
// planned: a source that changes meanwhile fails the transaction (and it
// is rolled back) instead of writing a mix.
type hostContent struct {
	path  string
	size  int64
	mtime time.Time
}

func (c *hostContent) Size() int64 { return c.size }

func (c *hostContent) ReadAt(b []byte, off int64) (int, error) {
	f, err := os.Open(c.path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Size() != c.size || !st.ModTime().Equal(c.mtime) {
		return 0, fmt.Errorf("%s changed since it was read (size %d, was %d)", c.path, st.Size(), c.size)
	}
	n, err := f.ReadAt(b, off)
	if err == io.EOF && off+int64(n) == c.size {
		err = nil
		if n < len(b) {
			err = io.EOF
		}
	}
	return n, err
}
