package fsread

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// diskNames makes the disks' names usable as path components and unique:
// "/" and NUL become "_", an empty or dot name becomes "disk<N>", and a
// repeated name gets "_2", "_3", ...
func diskNames(disks []DiskSource) []string {
	seen := map[string]bool{}
	out := make([]string, len(disks))
	for i, d := range disks {
		n := strings.Map(func(r rune) rune {
			if r == '/' || r == 0 {
				return '_'
			}
			return r
		}, d.Name)
		if n == "" || n == "." || n == ".." {
			n = fmt.Sprintf("disk%d", i)
		}
		base := n
		for k := 2; seen[n]; k++ {
			n = fmt.Sprintf("%s_%d", base, k)
		}
		seen[n] = true
		out[i] = n
	}
	return out
}

// DiskName is the name an image file gives its disk: its base name
// without extension ("/images/web-1.qcow2" -> "web-1").
func DiskName(file string) string {
	b := filepath.Base(file)
	if ext := filepath.Ext(b); ext != "" && ext != b {
		b = strings.TrimSuffix(b, ext)
	}
	return b
}

// index builds the namespace: directories and the path of every volume.
func (s *Set) index(multi bool) {
	s.root = &Dir{Path: "/"}
	s.dirs["/"] = s.root
	for _, d := range s.disks {
		target := s.root
		if multi {
			target = &Dir{Name: d.Name, Path: d.Path, Disk: d}
			s.root.Dirs = append(s.root.Dirs, target)
			s.dirs[d.Path] = target
		} else {
			s.root.Disk = d
		}
		target.Volumes = append(target.Volumes, d.Volumes...)
		s.volumes = append(s.volumes, d.Volumes...)
	}
	s.root.Volumes = append(s.root.Volumes, s.lvVolumes...)
	s.volumes = append(s.volumes, s.lvVolumes...)
	for _, v := range s.volumes {
		s.byPath[v.Path] = v
	}
}

// Disks lists the disks in the order given.
func (s *Set) Disks() []*Disk { return s.disks }

// Volumes lists every volume: each disk's partitions (or whole-disk
// volume) in disk order, then the LVs.
func (s *Set) Volumes() []*Volume { return s.volumes }

// Root is the top directory of the namespace.
func (s *Set) Root() *Dir { return s.root }

// Dir returns the namespace directory at p ("/", or "/vda" with several
// disks), or nil.
func (s *Set) Dir(p string) *Dir { return s.dirs[path.Clean("/"+p)] }

// Errors are the damaged partition tables and LVM metadata: each makes one
// disk or VG unreadable, not the set.
func (s *Set) Errors() []error { return s.errs }

// Warnings are conditions of the set that did not stop reading (stale LVM
// metadata, missing PVs, renamed LVs). Disks carry their own.
func (s *Set) Warnings() []string { return s.warnings }

// Close closes the filesystems opened through the set's volumes; their FS
// fails afterwards. The images are the caller's.
func (s *Set) Close() error {
	var errs []error
	for _, v := range s.volumes {
		if err := v.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NotFoundError is a path that names no volume or namespace directory; it
// wraps fs.ErrNotExist.
type NotFoundError struct {
	Path string
	Dir  string   // the deepest directory that exists
	Have []string // what that directory holds
}

func (e *NotFoundError) Error() string {
	have := "it is empty"
	if len(e.Have) > 0 {
		have = "it has " + strings.Join(e.Have, ", ")
	}
	return fmt.Sprintf("%s: no such volume in %s (%s)", e.Path, e.Dir, have)
}

func (e *NotFoundError) Unwrap() error { return errNotExist }

// Resolve splits a path of the namespace into the volume it is in and the
// path inside that volume's filesystem, in io/fs form ("." for the volume's
// root, "etc/fstab"). The path is cleaned lexically first. When p names a
// directory of the namespace itself (the root, or a disk when there are
// several), vol is nil, rest is "" and err is nil: Dir(p) lists it. A name
// that is not there is a *NotFoundError (errors.Is fs.ErrNotExist).
func (s *Set) Resolve(p string) (vol *Volume, rest string, err error) {
	clean := path.Clean("/" + p)
	if s.dirs[clean] != nil {
		return nil, "", nil
	}
	parts := strings.Split(clean[1:], "/")
	dir := s.root
	for n := 1; n <= len(parts); n++ {
		vp := "/" + strings.Join(parts[:n], "/")
		if v := s.byPath[vp]; v != nil {
			rest = strings.Join(parts[n:], "/")
			if rest == "" {
				rest = "."
			}
			return v, rest, nil
		}
		d := s.dirs[vp]
		if d == nil {
			break
		}
		dir = d
	}
	var have []string
	for _, d := range dir.Dirs {
		have = append(have, d.Name)
	}
	for _, v := range dir.Volumes {
		have = append(have, v.Name)
	}
	return nil, "", &NotFoundError{Path: clean, Dir: dir.Path, Have: have}
}
