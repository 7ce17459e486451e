package vhd

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"unicode/utf16"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// maxLocatorData bounds one parent locator's platform data; paths are far
// shorter (Windows caps them at 32 Ki UTF-16 units).
const maxLocatorData = 64 << 10

// parentNames lists the names a differencing disk gives its parent, best
// first: the relative locators (which survive moving a chain to another
// directory or host), then the absolute ones reduced to their base name in
// the child's directory, then the Parent Unicode Name (spec "Parent
// Locator Entries").
func (img *Image) parentNames(dyn *DynHeader) ([]string, error) {
	var rel, abs []string
	for i, l := range dyn.ParentLocators {
		if l.PlatformCode == PlatformNone || l.PlatformDataLength == 0 {
			continue
		}
		entryOff := int64(img.footer.DataOffset) + 576 + int64(i)*ParentLocatorSize
		if l.PlatformDataLength > maxLocatorData || l.PlatformDataOffset > uint64(img.f.Size()) ||
			uint64(img.f.Size())-l.PlatformDataOffset < uint64(l.PlatformDataLength) {
			return nil, img.errAt(entryOff, l.PlatformDataOffset, "parent locator %d data (%d bytes) outside the file", i, l.PlatformDataLength)
		}
		buf := make([]byte, l.PlatformDataLength)
		if _, err := img.f.ReadAt(buf, int64(l.PlatformDataOffset)); err != nil {
			return nil, fmt.Errorf("%s: reading parent locator %d: %w", img.name, i, err)
		}
		switch l.PlatformCode {
		case PlatformW2ru:
			rel = append(rel, windowsPath(utf16LE(buf)))
		case PlatformWi2r:
			rel = append(rel, windowsPath(cString(buf)))
		case PlatformW2ku:
			abs = append(abs, windowsPath(utf16LE(buf)))
		case PlatformWi2k:
			abs = append(abs, windowsPath(cString(buf)))
		case PlatformMacX:
			if u, err := url.Parse(cString(buf)); err == nil && u.Path != "" {
				p := u.Path
				if u.Host == "." { // file://./name
					p = strings.TrimPrefix(p, "/")
				}
				if path.IsAbs(p) {
					abs = append(abs, p)
				} else {
					rel = append(rel, p)
				}
			}
		}
	}
	names := rel
	for _, a := range abs {
		names = append(names, path.Base(a))
	}
	if n := utf16BE(dyn.ParentUnicodeName[:]); n != "" {
		names = append(names, path.Base(windowsPath(n)))
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.TrimPrefix(n, "./")
		if n == "" || n == "." || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	return out, nil
}

func (img *Image) openParent(dyn *DynHeader, opts vdisk.OpenOptions) error {
	names, err := img.parentNames(dyn)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return img.errAt(int64(img.footer.DataOffset)+64, nil, "differencing disk names no parent")
	}
	img.info.BackingFilename = names[0]
	img.info.BackingFormat = "vpc"
	if opts.NoBacking {
		return nil
	}
	if opts.OpenBacking == nil {
		return &vdisk.FormatError{Image: img.name, Off: -1, Msg: "differencing disk needs its parent " + names[0], Err: vdisk.ErrBackingMissing}
	}
	var tried []string
	for _, n := range names {
		p, err := opts.OpenBacking(vdisk.ResolveRelative(img.name, n), "vpc")
		if errors.Is(err, vdisk.ErrBackingMissing) {
			tried = append(tried, n)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: parent %s: %w", img.name, n, err)
		}
		img.backing = p
		img.info.BackingFilename = n
		if pu := p.Info().UUID; pu != img.info.ParentUUID {
			img.info.Warnings = append(img.info.Warnings,
				fmt.Sprintf("parent %s has unique id %s, the child expects %s: the parent changed after the child was made", n, pu, img.info.ParentUUID))
		}
		return nil
	}
	return &vdisk.FormatError{Image: img.name, Off: -1, Msg: "parent not found; tried " + strings.Join(tried, ", "), Err: vdisk.ErrBackingMissing}
}

// windowsPath turns a Windows path into a slash-separated one.
func windowsPath(s string) string { return strings.ReplaceAll(s, `\`, "/") }

func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func utf16LE(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := uint16(b[i]) | uint16(b[i+1])<<8
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func utf16BE(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := uint16(b[i])<<8 | uint16(b[i+1])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
