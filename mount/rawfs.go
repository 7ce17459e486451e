package mount

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// rawFS serves directories without OPENDIR and RELEASEDIR. The first
// OPENDIR answers ENOSYS, which tells the kernel (FUSE_NO_OPENDIR_SUPPORT)
// to stop sending them: a walk then costs two round trips per directory
// instead of four, and the kernel keeps every listing in its cache
// (FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE, its default without an open), which
// suits a mount whose directories never change. Each READDIR then comes
// without a handle; it is served by opening, reading at the kernel's
// offset and releasing a handle here, in process, which is cheap because
// nodes keep their listing until it has been read to the end.
type rawFS struct {
	fuse.RawFileSystem
}

func (r rawFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

func (r rawFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.withHandle(cancel, in, func(in *fuse.ReadIn) fuse.Status {
		return r.RawFileSystem.ReadDir(cancel, in, out)
	})
}

func (r rawFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.withHandle(cancel, in, func(in *fuse.ReadIn) fuse.Status {
		return r.RawFileSystem.ReadDirPlus(cancel, in, out)
	})
}

func (r rawFS) withHandle(cancel <-chan struct{}, in *fuse.ReadIn, read func(*fuse.ReadIn) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return read(in) // a kernel that opened anyway
	}
	var oo fuse.OpenOut
	oin := fuse.OpenIn{InHeader: in.InHeader, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}
	if st := r.RawFileSystem.OpenDir(cancel, &oin, &oo); !st.Ok() {
		return st
	}
	rin := *in
	rin.Fh = oo.Fh
	st := read(&rin)
	r.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: oo.Fh})
	return st
}
