package imagefmt

import (
	"fmt"
	"os"
	"syscall"
)

// identity names a file by device and inode, so a chain that reaches the
// same file through another name (symlink, hardlink, ../x) is a loop.
func identity(st os.FileInfo) string {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", s.Dev, s.Ino)
	}
	return st.Name()
}
