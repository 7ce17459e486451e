package ext

import (
	"fmt"
	"sort"
	"time"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/fsys"
)

// Info describes the filesystem.
func (f *FS) Info() *fsys.Info {
	sb := f.sb
	var feats []string
	for _, set := range []struct {
		v     uint32
		names map[uint32]string
	}{{sb.FeatureCompat, disklayout.CompatNames}, {sb.FeatureIncompat, disklayout.IncompatNames}, {sb.FeatureRoCompat, disklayout.RoCompatNames}} {
		for b, n := range set.names {
			if set.v&b != 0 {
				feats = append(feats, n)
			}
		}
	}
	sort.Strings(feats)
	u := sb.UUID
	info := &fsys.Info{
		Type:       f.fsType,
		Label:      cString(sb.VolumeName[:]),
		UUID:       fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]),
		BlockSize:  int64(f.bs),
		Blocks:     f.blocks,
		FreeBlocks: sb.FreeBlocksCount(),
		Files:      uint64(sb.InodesCount),
		FreeFiles:  uint64(sb.FreeInodesCount),
		Features:   feats,
		NameMax:    disklayout.NameMax,
	}
	if sb.Mtime != 0 {
		info.LastMount = time.Unix(int64(sb.Mtime)|int64(sb.MtimeHi)<<32, 0).UTC()
	}
	return info
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
