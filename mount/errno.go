package mount

import (
	"errors"
	"io/fs"
	"syscall"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// toErrno is the one place errors become FUSE status codes. Corruption and
// anything unexpected are EIO.
func toErrno(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &errno):
		return errno
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fsys.ErrNoXattr):
		return syscall.ENODATA
	case errors.Is(err, fsys.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, fsys.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, fsys.ErrNotSymlink):
		return syscall.EINVAL
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, fsys.ErrUnsupported):
		return syscall.EOPNOTSUPP
	}
	return syscall.EIO
}

// isQuiet says whether an error is an ordinary answer (no such file, no such
// attribute) rather than something to report.
func isQuiet(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fsys.ErrNoXattr) ||
		errors.Is(err, fsys.ErrNotDir) || errors.Is(err, fsys.ErrIsDir) || errors.Is(err, fsys.ErrNotSymlink)
}
