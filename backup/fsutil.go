package backup

import (
	"os"
	"syscall"
)

// allocatedBytes is the space a file takes on its filesystem.
func allocatedBytes(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}
