package runs

import (
	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Allocated is the host space f takes (st_blocks), or its size when f is not
// a host file.
func Allocated(f vdisk.File) int64 {
	if of, ok := f.(*vdisk.OSFile); ok {
		var st unix.Stat_t
		if unix.Fstat(int(of.Fd()), &st) == nil {
			return st.Blocks * 512
		}
	}
	return f.Size()
}
