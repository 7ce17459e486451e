package testimages

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// debugfsTimes completes a manifest scanned through fuse2fs, which reports
// whole seconds only, with the exact times debugfs prints of each inode
// (the raw 32-bit seconds and the extra field), including the birth time.
// Each corrected time must agree with fuse2fs's to the second.
func debugfsTimes(img string, m *Manifest) error {
	tmp, err := os.MkdirTemp("", "vmmount-debugfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var cmds strings.Builder
	seen := map[uint64]bool{}
	for _, e := range m.Entries {
		if !seen[e.Ino] {
			seen[e.Ino] = true
			fmt.Fprintf(&cmds, "stat <%d>\n", e.Ino)
		}
	}
	cmdFile := filepath.Join(tmp, "cmds")
	if err := os.WriteFile(cmdFile, []byte(cmds.String()), 0o644); err != nil {
		return err
	}
	out, err := RunIn("", []string{"DEBUGFS_PAGER=__none__", "PAGER=__none__"}, "debugfs", "-f", cmdFile, img)
	if err != nil {
		return err
	}
	times, err := parseDebugfsStats(out)
	if err != nil {
		return err
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		t, ok := times[e.Ino]
		if !ok {
			return fmt.Errorf("debugfs printed no times for inode %d (%s)", e.Ino, e.Path)
		}
		for _, c := range []struct {
			name      string
			dst       *time.Time
			src       time.Time
			mustAgree bool
		}{{"atime", &e.Atime, t[0], true}, {"mtime", &e.Mtime, t[1], true}, {"ctime", &e.Ctime, t[2], true}, {"crtime", &e.Btime, t[3], false}} {
			if c.src.IsZero() {
				continue
			}
			if c.mustAgree && c.src.Unix() != c.dst.Unix() {
				return fmt.Errorf("%s: %s from debugfs %v, from fuse2fs %v", e.Path, c.name, c.src, *c.dst)
			}
			*c.dst = c.src
		}
	}
	return nil
}

// parseDebugfsStats reads the output of many "stat <ino>" commands:
// atime, mtime, ctime, crtime per inode.
func parseDebugfsStats(out string) (map[uint64][4]time.Time, error) {
	res := map[uint64][4]time.Time{}
	var ino uint64
	var cur [4]time.Time
	have := false
	flush := func() {
		if have {
			res[ino] = cur
		}
		cur, have = [4]time.Time{}, false
	}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "debugfs: stat <"); ok {
			flush()
			n, err := strconv.ParseUint(strings.TrimSuffix(rest, ">"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("debugfs output: %q", line)
			}
			ino, have = n, true
			continue
		}
		field, val, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			continue
		}
		idx := map[string]int{"atime": 0, "mtime": 1, "ctime": 2, "crtime": 3}
		i, ok := idx[field]
		if !ok || !have {
			continue
		}
		raw, _, _ := strings.Cut(val, " ")
		t, err := extTime(raw)
		if err != nil {
			return nil, fmt.Errorf("inode %d %s: %w", ino, field, err)
		}
		cur[i] = t
	}
	flush()
	return res, nil
}

// extTime decodes debugfs's "0xSECONDS:0xEXTRA" (or "0xSECONDS" for
// 128-byte inodes): seconds are signed 32 bits extended by the low two
// bits of extra, whose upper 30 bits are nanoseconds (kernel
// Documentation/filesystems/ext4/inodes.rst, "Inode Timestamps").
func extTime(raw string) (time.Time, error) {
	secStr, extraStr, hasExtra := strings.Cut(raw, ":")
	sec, err := strconv.ParseUint(strings.TrimPrefix(secStr, "0x"), 16, 32)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q", raw)
	}
	s := int64(int32(uint32(sec)))
	var ns int64
	if hasExtra {
		extra, err := strconv.ParseUint(strings.TrimPrefix(extraStr, "0x"), 16, 32)
		if err != nil {
			return time.Time{}, fmt.Errorf("bad time %q", raw)
		}
		s += int64(extra&3) << 32
		ns = int64(extra >> 2)
	}
	return time.Unix(s, ns).UTC(), nil
}
