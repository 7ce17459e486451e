package main

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// modeString formats a Unix st_mode as ls -l does: "drwxr-sr-t".
func modeString(m uint32) string {
	b := []byte("?rwxrwxrwx")
	switch m & fsys.S_IFMT {
	case fsys.S_IFREG:
		b[0] = '-'
	case fsys.S_IFDIR:
		b[0] = 'd'
	case fsys.S_IFLNK:
		b[0] = 'l'
	case fsys.S_IFCHR:
		b[0] = 'c'
	case fsys.S_IFBLK:
		b[0] = 'b'
	case fsys.S_IFIFO:
		b[0] = 'p'
	case fsys.S_IFSOCK:
		b[0] = 's'
	}
	for i := 0; i < 9; i++ {
		if m&(1<<(8-i)) == 0 {
			b[1+i] = '-'
		}
	}
	special := func(bit uint32, pos int, set, unset byte) {
		if m&bit != 0 {
			if b[pos] == '-' {
				b[pos] = unset
			} else {
				b[pos] = set
			}
		}
	}
	special(0o4000, 3, 's', 'S')
	special(0o2000, 6, 's', 'S')
	special(0o1000, 9, 't', 'T')
	return string(b)
}

// typeWord is the file type in --json output.
func typeWord(m uint32) string {
	switch m & fsys.S_IFMT {
	case fsys.S_IFREG:
		return "file"
	case fsys.S_IFDIR:
		return "dir"
	case fsys.S_IFLNK:
		return "symlink"
	case fsys.S_IFCHR:
		return "char"
	case fsys.S_IFBLK:
		return "block"
	case fsys.S_IFIFO:
		return "fifo"
	case fsys.S_IFSOCK:
		return "socket"
	}
	return "unknown"
}

// typeName is the file type as stat(1) says it.
func typeName(m uint32) string {
	switch m & fsys.S_IFMT {
	case fsys.S_IFREG:
		return "regular file"
	case fsys.S_IFDIR:
		return "directory"
	case fsys.S_IFLNK:
		return "symbolic link"
	case fsys.S_IFCHR:
		return "character special file"
	case fsys.S_IFBLK:
		return "block special file"
	case fsys.S_IFIFO:
		return "fifo"
	case fsys.S_IFSOCK:
		return "socket"
	}
	return "unknown type"
}

func isDevice(m uint32) bool {
	t := m & fsys.S_IFMT
	return t == fsys.S_IFCHR || t == fsys.S_IFBLK
}

// devString is "major, minor" of a Linux dev_t.
func devString(rdev uint64) string {
	return fmt.Sprintf("%d, %d", unix.Major(rdev), unix.Minor(rdev))
}

// Guest times print in UTC: the guest's time zone is not known.
const (
	lsTimeFormat   = "2006-01-02 15:04"
	statTimeFormat = "2006-01-02 15:04:05.000000000 -0700"
)

func statTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(statTimeFormat)
}
