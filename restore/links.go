package restore

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Hardlinks: the first name of a guest inode with several links is
// restored as a new entry; every later name restored in the same run
// becomes a hardlink to it (linkat from the first copy's directory, opened
// again below DEST with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS). A name
// met while the first copy is still being written waits for it, holding
// its directory open so its metadata is set after the link is made.

type linkState struct {
	done    bool
	ok      bool
	skipped bool   // the first name existed and was kept (Skip)
	guest   string // the first copy's guest path, for messages
	dirRel  string
	name    string
	hostIno uint64
	waiters []pendingLink
}

type pendingLink struct {
	dir         *dirState
	name, guest string
}

// linkFor returns the link state of a multiply-linked inode. first says
// this is the first name met: the caller restores it and calls linkDone.
// Otherwise the name is linked at once, or queued until the first copy is
// done.
func (r *restorer) linkFor(key inodeKey, parent *dirState, name, guest string) (ls *linkState, first bool) {
	r.linkMu.Lock()
	ls = r.links[key]
	if ls == nil {
		ls = &linkState{guest: guest}
		r.links[key] = ls
		r.linkMu.Unlock()
		return ls, true
	}
	if !ls.done {
		parent.hold()
		ls.waiters = append(ls.waiters, pendingLink{parent, name, guest})
		r.linkMu.Unlock()
		return ls, false
	}
	r.linkMu.Unlock()
	r.link(ls, parent, name, guest)
	return ls, false
}

// linkDone records whether the first copy was made (err nil), kept
// (errSkipped) or failed, and makes the links that waited for it.
func (r *restorer) linkDone(ls *linkState, dir *dirState, name string, hostIno uint64, err error) {
	if ls == nil {
		return
	}
	r.linkMu.Lock()
	ls.done, ls.ok, ls.skipped = true, err == nil, errors.Is(err, errSkipped)
	ls.dirRel, ls.name, ls.hostIno = dir.rel, name, hostIno
	waiters := ls.waiters
	ls.waiters = nil
	r.linkMu.Unlock()
	for _, w := range waiters {
		r.link(ls, w.dir, w.name, w.guest)
		r.release(w.dir)
	}
}

// link makes name in dir a hardlink to the first copy of ls.
func (r *restorer) link(ls *linkState, dir *dirState, name, guest string) {
	if ls.skipped {
		// A rerun with Skip: the other names are usually there too.
		if _, err := lstatAt(dir.fd, name); err == nil {
			r.c.skipped.Add(1)
			return
		}
	}
	if !ls.ok {
		r.fail(guest, fmt.Errorf("hardlink to %s, which was not restored", ShowPath(ls.guest)))
		return
	}
	err := r.linkAt(ls, dir, name)
	switch {
	case errors.Is(err, errSkipped):
		r.c.skipped.Add(1)
	case err != nil:
		r.fail(guest, fmt.Errorf("hardlink to %s: %w", ShowPath(ls.guest), err))
	default:
		r.c.hardlinks.Add(1)
	}
}

func (r *restorer) linkAt(ls *linkState, dir *dirState, name string) error {
	src, err := openBeneath(r.root, ls.dirRel)
	if err != nil {
		return fmt.Errorf("reopening %s: %w", ls.dirRel, err)
	}
	defer unix.Close(src)
	made := name
	err = unix.Linkat(src, ls.name, dir.fd, name, 0)
	if errors.Is(err, unix.EEXIST) {
		switch r.o.Existing {
		case Refuse:
			return ErrExists
		case Skip:
			return errSkipped
		}
		made = tmpName()
		err = unix.Linkat(src, ls.name, dir.fd, made, 0)
	}
	if err != nil {
		return err
	}
	// The name linked must still be the copy made: a concurrent writer
	// could have put something else there meanwhile.
	st, err := lstatAt(dir.fd, made)
	if err == nil && st.Ino != ls.hostIno {
		err = fmt.Errorf("%s in the destination is no longer the file restored", relJoin(ls.dirRel, ls.name))
	}
	if err == nil && made != name {
		err = unix.Renameat(dir.fd, made, dir.fd, name)
	}
	if err != nil {
		unix.Unlinkat(dir.fd, made, 0)
		return err
	}
	return nil
}
