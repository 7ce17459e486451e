package restore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// A POSIX.1-2001 pax tar writer (IEEE Std 1003.1-2017, pax "ustar
// Interchange Format" and "pax Extended Header"). Go's archive/tar cannot
// write sparse entries and drops GNU.sparse.* records, so the format is
// written here. Every entry gets an extended header ('x') that carries
// exactly what ustar fields cannot: the path and link target (any bytes,
// any length), size and ids beyond their octal fields, times with
// nanoseconds, xattrs as SCHILY.xattr.<name> (star, GNU tar and bsdtar read
// them), and sparse files in the GNU 1.0 format (GNU tar manual, "Storing
// Sparse Files"): the GNU.sparse.major/minor/name/realsize records, a fake
// ustar name <dir>/GNUSparseFile.0/<name>, and a data part that starts with
// the map (decimal count, then offset and length of each data fragment,
// one number a line, padded to a block), followed by the fragments.

const tarBlock = 512

// Type flags (ustar typeflag).
const (
	tarReg     = '0'
	tarLink    = '1'
	tarSymlink = '2'
	tarChar    = '3'
	tarBlockT  = '4'
	tarDir     = '5'
	tarFIFO    = '6'
	tarPAX     = 'x'
)

type tarHeader struct {
	Name     string // slash-separated; directories without the trailing slash
	Linkname string
	Type     byte
	Mode     uint32 // permission, setuid, setgid, sticky bits
	Uid, Gid uint32
	// Size is the file's length; for a sparse file its real size.
	Size                int64
	Mtime, Atime, Ctime time.Time
	Devmajor, Devminor  uint32
	Xattrs              []xattr
	// Sparse lists the data fragments of a sparse file (holes between
	// them and after the last); nil writes the file densely.
	Sparse []fsys.Range
}

type tarWriter struct {
	w       *bufio.Writer
	remain  int64 // content bytes the current entry still expects
	pad     int64 // padding after them
	written int64
}

func newTarWriter(w io.Writer) *tarWriter {
	return &tarWriter{w: bufio.NewWriterSize(w, 1<<20)}
}

var errTarShort = errors.New("tar entry: content shorter than its header says")

// begin writes an entry's headers (and a sparse map); its content follows
// through Write: Size bytes, or for a sparse file the bytes of each
// fragment in order.
func (t *tarWriter) begin(h *tarHeader) error {
	if t.remain != 0 {
		return errTarShort
	}
	name := h.Name
	if h.Type == tarDir {
		name += "/"
	}
	rec := map[string]string{}
	var sparseMap []byte
	content := int64(0)
	if h.Type == tarReg {
		content = h.Size
	}
	ustarName := name
	if h.Type == tarReg && h.Sparse != nil {
		content = 0
		sparseMap = append(strconv.AppendInt(nil, int64(len(h.Sparse)), 10), '\n')
		for _, r := range h.Sparse {
			content += r.Len
			sparseMap = strconv.AppendInt(sparseMap, r.Off, 10)
			sparseMap = append(sparseMap, '\n')
			sparseMap = strconv.AppendInt(sparseMap, r.Len, 10)
			sparseMap = append(sparseMap, '\n')
		}
		if p := len(sparseMap) % tarBlock; p != 0 {
			sparseMap = append(sparseMap, make([]byte, tarBlock-p)...)
		}
		rec["GNU.sparse.major"] = "1"
		rec["GNU.sparse.minor"] = "0"
		rec["GNU.sparse.name"] = name
		rec["GNU.sparse.realsize"] = strconv.FormatInt(h.Size, 10)
		dir, base := "", name
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			dir, base = name[:i+1], name[i+1:]
		}
		ustarName = dir + "GNUSparseFile.0/" + base
	} else {
		rec["path"] = name
	}
	member := content + int64(len(sparseMap))
	if h.Linkname != "" {
		rec["linkpath"] = h.Linkname
	}
	if member >= 1<<33 {
		rec["size"] = strconv.FormatInt(member, 10)
	}
	if h.Uid >= 1<<21 {
		rec["uid"] = strconv.FormatUint(uint64(h.Uid), 10)
	}
	if h.Gid >= 1<<21 {
		rec["gid"] = strconv.FormatUint(uint64(h.Gid), 10)
	}
	rec["mtime"] = paxTime(h.Mtime)
	rec["atime"] = paxTime(h.Atime)
	rec["ctime"] = paxTime(h.Ctime)
	for _, x := range h.Xattrs {
		key := "SCHILY.xattr." + x.name
		switch x.name {
		case "system.posix_acl_access", "system.posix_acl_default":
			// As text, where tar programs look for ACLs; the xattr
			// form if it cannot be decoded.
			if txt, err := aclText(x.value); err == nil {
				key, x.value = "SCHILY.acl."+strings.TrimPrefix(x.name, "system.posix_acl_"), []byte(txt)
			}
		}
		rec[key] = string(x.value)
	}
	if err := t.writeExtended(ustarName, rec); err != nil {
		return err
	}
	var b [tarBlock]byte
	putString(b[0:100], ustarName)
	putOctal(b[100:108], int64(h.Mode&0o7777))
	putOctal(b[108:116], int64(h.Uid))
	putOctal(b[116:124], int64(h.Gid))
	putOctal(b[124:136], member)
	putOctal(b[136:148], h.Mtime.Unix())
	b[156] = h.Type
	putString(b[157:257], h.Linkname)
	copy(b[257:], "ustar\x0000")
	putOctal(b[329:337], int64(h.Devmajor))
	putOctal(b[337:345], int64(h.Devminor))
	putChecksum(&b)
	if _, err := t.w.Write(b[:]); err != nil {
		return err
	}
	if _, err := t.w.Write(sparseMap); err != nil {
		return err
	}
	t.remain = content
	t.pad = (tarBlock - member%tarBlock) % tarBlock
	return t.finishIfDone()
}

// writeExtended writes the 'x' header holding recs.
func (t *tarWriter) writeExtended(name string, recs map[string]string) error {
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var data []byte
	for _, k := range keys {
		data = append(data, paxRecord(k, recs[k])...)
	}
	var b [tarBlock]byte
	xname := "PaxHeaders.0/" + name[strings.LastIndexByte(strings.TrimSuffix(name, "/"), '/')+1:]
	putString(b[0:100], xname)
	putOctal(b[100:108], 0o644)
	putOctal(b[108:116], 0)
	putOctal(b[116:124], 0)
	putOctal(b[124:136], int64(len(data)))
	putOctal(b[136:148], 0)
	b[156] = tarPAX
	copy(b[257:], "ustar\x0000")
	putChecksum(&b)
	if _, err := t.w.Write(b[:]); err != nil {
		return err
	}
	if _, err := t.w.Write(data); err != nil {
		return err
	}
	_, err := t.w.Write(make([]byte, (tarBlock-len(data)%tarBlock)%tarBlock))
	return err
}

// Write appends content of the current entry.
func (t *tarWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > t.remain {
		return 0, fmt.Errorf("tar entry: %d bytes more than its header says", int64(len(p))-t.remain)
	}
	n, err := t.w.Write(p)
	t.remain -= int64(n)
	if err != nil {
		return n, err
	}
	return n, t.finishIfDone()
}

// fillZeros completes the current entry with zeros, for content that
// could not be read: the archive stays readable, the entry is reported.
func (t *tarWriter) fillZeros() error {
	var z [32 << 10]byte
	for t.remain > 0 {
		if _, err := t.Write(z[:min(t.remain, int64(len(z)))]); err != nil {
			return err
		}
	}
	return nil
}

func (t *tarWriter) finishIfDone() error {
	if t.remain != 0 || t.pad == 0 {
		return nil
	}
	_, err := t.w.Write(make([]byte, t.pad))
	t.pad = 0
	return err
}

// close ends the archive with two zero blocks and flushes it.
func (t *tarWriter) close() error {
	if t.remain != 0 {
		return errTarShort
	}
	if _, err := t.w.Write(make([]byte, 2*tarBlock)); err != nil {
		return err
	}
	return t.w.Flush()
}

// paxRecord formats "<length> <key>=<value>\n", the length counting
// itself.
func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3
	d := len(strconv.Itoa(n))
	for len(strconv.Itoa(n+d)) != d {
		d++ // counting the digits made the number longer
	}
	n += d
	return strconv.Itoa(n) + " " + k + "=" + v + "\n"
}

// paxTime formats a time as seconds with nanoseconds; before 1970 the
// fraction counts towards the past (-1.25 is 1.25 s before the epoch).
func paxTime(t time.Time) string {
	sec, nsec := t.Unix(), int64(t.Nanosecond())
	if nsec == 0 {
		return strconv.FormatInt(sec, 10)
	}
	sign := ""
	if sec < 0 {
		sign, sec, nsec = "-", -(sec + 1), 1e9-nsec
	}
	return fmt.Sprintf("%s%d.%09d", sign, sec, nsec)
}

// putString copies s into a header field, truncated to leave a NUL, with
// bytes outside printable ASCII as '_': ustar fields hold the portable
// character set, the extended header holds the real name.
func putString(b []byte, s string) {
	for i := 0; i < len(b)-1 && i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			c = '_'
		}
		b[i] = c
	}
}

// putOctal writes v in octal with a trailing NUL, or 0 when it does not
// fit (the extended header has the exact value) or is negative.
func putOctal(b []byte, v int64) {
	digits := len(b) - 1
	if v < 0 || v >= 1<<(3*digits) {
		v = 0
	}
	s := strconv.FormatInt(v, 8)
	copy(b, strings.Repeat("0", digits-len(s))+s)
	b[digits] = 0
}

// putChecksum sets the header checksum: the sum of the header's bytes
// with the checksum field taken as spaces, six octal digits, NUL, space.
func putChecksum(b *[tarBlock]byte) {
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	s := strconv.FormatInt(int64(sum), 8)
	copy(b[148:], strings.Repeat("0", 6-len(s))+s)
	b[154], b[155] = 0, ' '
}
