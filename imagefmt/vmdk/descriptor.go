package vmdk

import (
	"fmt"
	"strconv"
	"strings"
)

// Descriptor limits: qemu reads at most 1 MiB of descriptor; a descriptor
// with more extents than a 2 TiB twoGbMaxExtent disk needs is hostile.
const (
	MaxDescriptorSize = 1 << 20
	MaxExtents        = 4096
)

// Descriptor is the parsed text descriptor (spec "The Descriptor File").
type Descriptor struct {
	Version            int
	CID                uint32
	ParentCID          uint32
	CreateType         string
	ParentFileNameHint string
	Extents            []ExtentLine
	DDB                map[string]string // ddb.* entries
}

// ExtentLine is one line of the extent description: access, size in sectors,
// type, file name and, for flat extents, the offset in the file (sectors).
type ExtentLine struct {
	Line     int // 1-based line number in the descriptor
	Access   string
	Sectors  int64
	Type     string
	FileName string
	Offset   int64
}

// NoParent is the parentCID of a disk without a parent.
const NoParent = 0xffffffff

// ParseDescriptor parses a descriptor. Unknown keys are ignored, as VMware
// and qemu do; malformed extent lines are errors naming the line.
func ParseDescriptor(text string) (*Descriptor, error) {
	d := &Descriptor{ParentCID: NoParent, DDB: map[string]string{}}
	if i := strings.IndexByte(text, 0); i >= 0 {
		text = text[:i] // embedded descriptors are NUL padded
	}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && !isAccess(firstField(line)) {
			k = strings.TrimSpace(k)
			v = unquote(strings.TrimSpace(v))
			switch {
			case k == "version":
				d.Version, _ = strconv.Atoi(v)
			case k == "CID":
				c, err := strconv.ParseUint(v, 16, 32)
				if err != nil {
					return nil, fmt.Errorf("line %d: bad CID %q", n+1, v)
				}
				d.CID = uint32(c)
			case k == "parentCID":
				c, err := strconv.ParseUint(v, 16, 32)
				if err != nil {
					return nil, fmt.Errorf("line %d: bad parentCID %q", n+1, v)
				}
				d.ParentCID = uint32(c)
			case k == "createType":
				d.CreateType = v
			case k == "parentFileNameHint":
				d.ParentFileNameHint = v
			case strings.HasPrefix(k, "ddb."):
				if len(d.DDB) < 1024 {
					d.DDB[k] = v
				}
			}
			continue
		}
		if !isAccess(firstField(line)) {
			continue
		}
		e, err := parseExtentLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v: %q", n+1, err, clip(line))
		}
		e.Line = n + 1
		if len(d.Extents) >= MaxExtents {
			return nil, fmt.Errorf("more than %d extents", MaxExtents)
		}
		d.Extents = append(d.Extents, e)
	}
	if d.CreateType == "" {
		return nil, fmt.Errorf("no createType")
	}
	return d, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func firstField(line string) string {
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		return line[:i]
	}
	return line
}

func isAccess(s string) bool { return s == "RW" || s == "RDONLY" || s == "NOACCESS" }

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// parseExtentLine parses `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`.
func parseExtentLine(line string) (ExtentLine, error) {
	var e ExtentLine
	rest := line
	next := func() string {
		rest = strings.TrimLeft(rest, " \t")
		i := strings.IndexAny(rest, " \t")
		if i < 0 {
			i = len(rest)
		}
		f := rest[:i]
		rest = rest[i:]
		return f
	}
	e.Access = next()
	n, err := strconv.ParseInt(next(), 10, 64)
	if err != nil || n <= 0 {
		return e, fmt.Errorf("bad extent size")
	}
	e.Sectors = n
	e.Type = next()
	if e.Type == "" {
		return e, fmt.Errorf("no extent type")
	}
	rest = strings.TrimLeft(rest, " \t")
	if rest == "" {
		return e, nil // ZERO extents have no file
	}
	if rest[0] != '"' {
		return e, fmt.Errorf("extent file name not quoted")
	}
	end := strings.IndexByte(rest[1:], '"')
	if end < 0 {
		return e, fmt.Errorf("unterminated extent file name")
	}
	e.FileName = rest[1 : 1+end]
	rest = strings.TrimSpace(rest[2+end:])
	if rest != "" {
		off, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || off < 0 {
			return e, fmt.Errorf("bad extent offset")
		}
		e.Offset = off
	}
	return e, nil
}
