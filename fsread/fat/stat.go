package fat

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// Permissions vfat shows when root mounts it with the default umask 022
// (fs/fat/inode.c: fs_fmask = fs_dmask = current_umask(); fat_make_mode).
const (
	dirPerm      = 0o755
	filePerm     = 0o755
	readOnlyPerm = 0o555 // ATTR_RO clears the write bits of files
)

// entryAt reads and checks the 8.3 entry an inode number points to.
func (f *FS) entryAt(ino uint64) (dirEntry, error) {
	g := &f.geo
	off := int64(ino) * dirEntrySize
	inRoot := g.kind != fat32 && off >= g.rootOff && off+dirEntrySize <= g.rootOff+g.rootSize
	inData := off >= g.dataOff && off+dirEntrySize <= g.dataOff+int64(g.clusters)*g.clusterSize
	if ino > uint64(f.size)/dirEntrySize || (!inRoot && !inData) {
		return dirEntry{}, f.corrupt(ino, -1, "no directory entry for this inode number")
	}
	var raw [dirEntrySize]byte
	if n, err := f.r.ReadAt(raw[:], off); n < len(raw) {
		if err == nil || errors.Is(err, io.EOF) {
			return dirEntry{}, f.corrupt(ino, off, "directory entry past the end of the volume")
		}
		return dirEntry{}, fmt.Errorf("%s: inode %d: %w", f.name, ino, err)
	}
	if isFree(raw[0]) || raw[11] == attrLongName || raw[11]&attrVolumeID != 0 {
		return dirEntry{}, f.corrupt(ino, off, "no file's directory entry at this inode number")
	}
	return decodeDirEntry(raw[:]), nil
}

// Stat returns an inode's metadata.
func (f *FS) Stat(ino uint64) (*fsys.Stat, error) {
	g := &f.geo
	if ino == rootIno {
		d, err := f.list(rootIno, 0)
		if err != nil {
			return nil, err
		}
		epoch := time.Unix(0, 0).UTC()
		return &fsys.Stat{
			Ino: rootIno, Mode: fsys.S_IFDIR | dirPerm, Nlink: uint32(d.subdirs + 2),
			Size: d.size, Blocks: roundUp(d.size, g.clusterSize) / 512,
			Atime: epoch, Mtime: epoch, Ctime: epoch,
			Flags: attrDirectory,
		}, nil
	}
	de, err := f.entryAt(ino)
	if err != nil {
		return nil, err
	}
	mtime := fatTime(de.WrtDate, de.WrtTime, 0)
	st := &fsys.Stat{
		Ino:   ino,
		Atime: fatTime(de.LstAccDate, 0, 0),
		Mtime: mtime,
		Ctime: mtime,
		Btime: fatTime(de.CrtDate, de.CrtTime, de.CrtTimeTenth),
		Flags: uint32(de.Attr),
		Nlink: 1,
	}
	if de.Attr&attrDirectory != 0 {
		d, err := f.list(ino, de.firstCluster())
		if err != nil {
			return nil, err
		}
		st.Mode = fsys.S_IFDIR | dirPerm
		st.Nlink = uint32(d.subdirs)
		st.Size = d.size
	} else {
		st.Mode = fsys.S_IFREG | filePerm
		if de.Attr&attrReadOnly != 0 {
			st.Mode = fsys.S_IFREG | readOnlyPerm
		}
		st.Size = int64(de.FileSize)
	}
	st.Blocks = roundUp(st.Size, g.clusterSize) / 512
	return st, nil
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// Days before the first of each month in a non-leap year, indexed by month
// 1..12; 0 for the invalid months 0 and 13..15 (fs/fat/misc.c).
var daysInYear = [16]int64{0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 0, 0, 0}

// fatTime converts a FAT date and time (and creation centiseconds) the way
// Linux's fat_time_fat2unix does, with no time zone offset (tz=UTC): out of
// range fields are not rejected but computed through.
func fatTime(date, tm uint16, cs uint8) time.Time {
	const (
		secsPerDay = 86400
		daysDelta  = 365*10 + 2 // 1970-01-01 to 1980-01-01
		year2100   = 120
	)
	year := int64(date >> 9)
	month := max(1, int64(date>>5)&0xF)
	day := max(1, int64(date&0x1F)) - 1
	leapDay := (year + 3) / 4
	if year > year2100 {
		leapDay--
	}
	if year&3 == 0 && year != year2100 && month > 2 {
		leapDay++
	}
	sec := int64(tm&0x1F) << 1
	sec += int64(tm>>5&0x3F) * 60
	sec += int64(tm>>11) * 3600
	sec += (year*365 + leapDay + daysInYear[month] + day + daysDelta) * secsPerDay
	var nsec int64
	if cs != 0 {
		sec += int64(cs) / 100
		nsec = int64(cs%100) * 10_000_000
	}
	return time.Unix(sec, nsec).UTC()
}

// Readlink: FAT has no symlinks.
func (f *FS) Readlink(ino uint64) (string, error) {
	return "", fmt.Errorf("%s: inode %d: %w", f.name, ino, fsys.ErrNotSymlink)
}

// Xattrs: FAT has no extended attributes.
func (f *FS) Xattrs(ino uint64) ([]string, error) {
	if _, err := f.Stat(ino); err != nil {
		return nil, err
	}
	return nil, nil
}

// Xattr: FAT has no extended attributes.
func (f *FS) Xattr(ino uint64, name string) ([]byte, error) {
	return nil, fmt.Errorf("%s: inode %d: %s: %w", f.name, ino, name, fsys.ErrNoXattr)
}
