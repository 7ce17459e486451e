package testimages

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf16"

	"golang.org/x/sys/unix"
)

// Reparse tags (MS-FSCC 2.1.2.1).
const (
	reparseTagMountPoint = 0xA0000003
	reparseTagSymlink    = 0xA000000C
)

// reparseBuffer builds a symbolic link (MS-FSCC 2.1.2.4) or mount point
// (junction, 2.1.2.5) reparse data buffer: tag, data length, reserved,
// then substitute and print names as UTF-16LE with their offsets (a
// symlink adds flags: 1 = relative).
func reparseBuffer(tag uint32, subst, print string, relative bool) []byte {
	enc := func(s string) []byte {
		var b []byte
		for _, u := range utf16.Encode([]rune(s)) {
			b = binary.LittleEndian.AppendUint16(b, u)
		}
		return b
	}
	sb, pb := enc(subst), enc(print)
	var d []byte
	d = binary.LittleEndian.AppendUint16(d, 0)                 // SubstituteNameOffset
	d = binary.LittleEndian.AppendUint16(d, uint16(len(sb)))   // SubstituteNameLength
	d = binary.LittleEndian.AppendUint16(d, uint16(len(sb)+2)) // PrintNameOffset
	d = binary.LittleEndian.AppendUint16(d, uint16(len(pb)))   // PrintNameLength
	if tag == reparseTagSymlink {
		flags := uint32(0)
		if relative {
			flags = 1
		}
		d = binary.LittleEndian.AppendUint32(d, flags)
	}
	d = append(append(append(append(d, sb...), 0, 0), pb...), 0, 0)
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, tag)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(d)))
	b = binary.LittleEndian.AppendUint16(b, 0)
	return append(b, d...)
}

// ntfsExtras adds what RichTree does not make on NTFS, under x/.
func ntfsExtras(mnt string, compressed bool) error {
	p := func(s string) string { return filepath.Join(mnt, filepath.FromSlash(s)) }
	var err error
	do := func(what string, e error) {
		if err == nil && e != nil {
			err = fmt.Errorf("NTFS extras %s: %w", what, e)
		}
	}
	write := func(name string, b []byte) { do(name, os.WriteFile(p(name), b, 0o644)) }
	mkdir := func(name string) { do(name, os.MkdirAll(p(name), 0o755)) }
	setx := func(name, attr string, v []byte) { do(name+" "+attr, unix.Lsetxattr(p(name), attr, v, 0)) }
	text := bytes.Repeat([]byte("compressible text, compressible text! "), 8000)

	if compressed {
		// A directory with FILE_ATTRIBUTE_COMPRESSED (0x800) makes
		// ntfs-3g compress what is written in it, in 16-cluster units;
		// runs of zeros become sparse compression units.
		mkdir("x/compressed")
		setx("x/compressed", XattrNTFSAttrib, []byte{0, 0, 0x08, 0x10})
		write("x/compressed/text", text)
		write("x/compressed/text-zeros-text", append(append(append([]byte(nil), text[:70000]...), make([]byte, 3<<16)...), text[:30000]...))
		write("x/compressed/zeros", make([]byte, 1<<20))
		write("x/compressed/small", text[:100])
		rnd := make([]byte, 200000)
		for i := range rnd {
			rnd[i] = byte(i*7919 + i>>8 + i>>16)
		}
		write("x/compressed/incompressible", rnd)
	}

	// Fragmented files: three files appended to in turn, 4 KiB at a
	// time, so their clusters interleave (hundreds of runs each, more
	// than fit in one MFT record at small cluster sizes).
	mkdir("x/frag")
	var fs []*os.File
	for i := range 3 {
		f, e := os.Create(p(fmt.Sprintf("x/frag/f%d", i)))
		do("frag", e)
		if e == nil {
			fs = append(fs, f)
		}
	}
	chunk := make([]byte, 4096)
	for n := 0; n < 400 && err == nil; n++ {
		for i, f := range fs {
			for j := range chunk {
				chunk[j] = byte(n*3 + i + j>>9)
			}
			_, e := f.Write(chunk)
			do("frag write", e)
			do("frag sync", f.Sync())
		}
	}
	for _, f := range fs {
		do("frag close", f.Close())
	}

	// Alternate data streams: a big non-resident one, small ones, an
	// empty one, on a file and on a directory.
	write("x/streams", []byte("main data"))
	setx("x/streams", "user.big", bytes.Repeat([]byte("stream "), 9000))
	setx("x/streams", "user.small", []byte("tiny"))
	setx("x/streams", "user.empty", nil)
	mkdir("x/streamdir")
	setx("x/streamdir", "user.ondir", []byte("a stream on a directory"))

	// Windows symlinks and junctions, set as raw reparse points.
	mkdir("x/win/Target Dir")
	write("x/win/Target Dir/inner.txt", []byte("inner"))
	mkdir("x/win/junction")
	setx("x/win/junction", XattrNTFSReparse, reparseBuffer(reparseTagMountPoint, `\??\C:\x\win\Target Dir`, `C:\x\win\Target Dir`, false))
	mkdir("x/win/junction-other-drive")
	setx("x/win/junction-other-drive", XattrNTFSReparse, reparseBuffer(reparseTagMountPoint, `\??\D:\Elsewhere\Dir`, `D:\Elsewhere\Dir`, false))
	write("x/win/symlink-absolute", nil)
	setx("x/win/symlink-absolute", XattrNTFSReparse, reparseBuffer(reparseTagSymlink, `\??\C:\x\win\Target Dir\inner.txt`, `C:\x\win\Target Dir\inner.txt`, false))
	write("x/win/symlink-relative", nil)
	setx("x/win/symlink-relative", XattrNTFSReparse, reparseBuffer(reparseTagSymlink, `Target Dir\inner.txt`, `Target Dir\inner.txt`, true))
	write("x/win/symlink-dotdot", nil)
	setx("x/win/symlink-dotdot", XattrNTFSReparse, reparseBuffer(reparseTagSymlink, `..\win\Target Dir\inner.txt`, `..\win\Target Dir\inner.txt`, true))
	mkdir("x/win/dir-symlink")
	setx("x/win/dir-symlink", XattrNTFSReparse, reparseBuffer(reparseTagSymlink, `Target Dir`, `Target Dir`, true))

	// Interix special files and symlink (ntfs-3g's default
	// special_files=interix).
	mkdir("x/intx")
	do("mkfifo", unix.Mkfifo(p("x/intx/fifo"), 0o644))
	do("mknod", unix.Mknod(p("x/intx/null"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
	do("mknod", unix.Mknod(p("x/intx/sda"), unix.S_IFBLK|0o644, int(unix.Mkdev(8, 0))))

	// Attribute flags: hidden, read-only, system, archive.
	write("x/hidden-readonly", []byte("h"))
	setx("x/hidden-readonly", XattrNTFSAttrib, []byte{0, 0, 0, 0x23})
	write("x/system", []byte("s"))
	setx("x/system", XattrNTFSAttrib, []byte{0, 0, 0, 0x24})

	// A long name that ntfs-3g keeps in the POSIX namespace only.
	write("x/Long File Name With Spaces.txt", []byte("8.3 alias"))
	return err
}
