package vhdx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf16"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// parseLocator decodes a parent locator item (section 2.6.2.6): a type GUID
// and key/value pairs of UTF-16LE strings located by offsets from the start
// of the item.
func (img *Image) parseLocator(b []byte, at int64) (map[string]string, error) {
	if len(b) < 20 {
		return nil, img.errAt(at, len(b), "parent locator too short")
	}
	var typ GUID
	copy(typ[:], b)
	if typ != ParentLocatorTypeVHD {
		return nil, img.unsupported(at, typ, "unknown parent locator type")
	}
	n := int(binary.LittleEndian.Uint16(b[18:]))
	if 20+n*12 > len(b) {
		return nil, img.errAt(at+18, n, "parent locator entries past the item")
	}
	kv := map[string]string{}
	for i := 0; i < n; i++ {
		e := b[20+12*i:]
		ko, vo := binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
		kl, vl := binary.LittleEndian.Uint16(e[8:]), binary.LittleEndian.Uint16(e[10:])
		if uint64(ko)+uint64(kl) > uint64(len(b)) || uint64(vo)+uint64(vl) > uint64(len(b)) {
			return nil, img.errAt(at+20+12*int64(i), ko, "parent locator entry %d outside the item", i)
		}
		kv[utf16LE(b[ko:ko+uint32(kl)])] = utf16LE(b[vo : vo+uint32(vl)])
	}
	return kv, nil
}

func utf16LE(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// openParent opens the parent named by the locator: relative_path first
// (it survives moving the chain), then the base names of the absolute
// paths beside the child. The parent's DataWriteGuid should equal
// parent_linkage (or parent_linkage2).
func (img *Image) openParent(loc []byte, at int64, opts vdisk.OpenOptions) error {
	kv, err := img.parseLocator(loc, at)
	if err != nil {
		return err
	}
	img.info.ParentUUID = strings.Trim(kv["parent_linkage"], "{}")
	var names []string
	add := func(n string) {
		n = strings.TrimPrefix(strings.ReplaceAll(n, `\`, "/"), "./")
		if n == "" {
			return
		}
		for _, o := range names {
			if o == n {
				return
			}
		}
		names = append(names, n)
	}
	add(kv["relative_path"])
	for _, k := range []string{"absolute_win32_path", "volume_path"} {
		if v := kv[k]; v != "" {
			add(path.Base(strings.ReplaceAll(v, `\`, "/")))
		}
	}
	if len(names) == 0 {
		return img.errAt(at, nil, "parent locator names no parent")
	}
	img.info.BackingFilename = names[0]
	img.info.BackingFormat = "vhdx"
	if opts.NoBacking {
		return nil
	}
	if opts.OpenBacking == nil {
		return &vdisk.FormatError{Image: img.name, Off: -1, Msg: "differencing disk needs its parent " + names[0], Err: vdisk.ErrBackingMissing}
	}
	var tried []string
	for _, n := range names {
		p, err := opts.OpenBacking(vdisk.ResolveRelative(img.name, n), "vhdx")
		if errors.Is(err, vdisk.ErrBackingMissing) {
			tried = append(tried, n)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: parent %s: %w", img.name, n, err)
		}
		img.backing = p
		img.info.BackingFilename = n
		if pi, ok := p.(*Image); ok {
			got := pi.hdr.DataWriteGUID.String()
			if !strings.EqualFold(got, img.info.ParentUUID) && !strings.EqualFold(got, strings.Trim(kv["parent_linkage2"], "{}")) {
				img.info.Warnings = append(img.info.Warnings, fmt.Sprintf(
					"parent %s has data write GUID %s, the child expects %s: the parent changed after the child was made", n, got, img.info.ParentUUID))
			}
		}
		return nil
	}
	return &vdisk.FormatError{Image: img.name, Off: -1, Msg: "parent not found; tried " + strings.Join(tried, ", "), Err: vdisk.ErrBackingMissing}
}
