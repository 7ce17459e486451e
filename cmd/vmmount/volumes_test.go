package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/testimages"
)

// Tests of the volume commands (info's volumes, ls, cat, stat) on the disk
// fixtures: what they print must be what the fixtures' oracles say.

type cmdResult struct {
	out, errOut string
	err         error
}

func runCmd(t *testing.T, json bool, f func(g *globalOptions) error) cmdResult {
	t.Helper()
	var out, errOut bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errOut, JSON: json}
	err := f(g)
	return cmdResult{out.String(), errOut.String(), err}
}

func ls(t *testing.T, json bool, o lsOptions, args ...string) cmdResult {
	return runCmd(t, json, func(g *globalOptions) error { return runLs(context.Background(), g, &o, args) })
}

// oracleOf finds the fixture volume with the given name and loads its
// oracle manifest.
// NTFS oracles' absolute link targets start with ntfs-3g's mount point,
// which the commands (no mount) leave out: it is removed here.
func oracleOf(t *testing.T, d *testimages.DiskImage, name string) *testimages.Manifest {
	t.Helper()
	for _, v := range d.Volumes {
		if v.Name == name {
			m, err := testimages.ReadJSON(v.OracleFile)
			if err != nil {
				t.Fatal(err)
			}
			if v.MountPoint != "" {
				for i := range m.Entries {
					m.Entries[i].Target = strings.TrimPrefix(m.Entries[i].Target, v.MountPoint)
				}
			}
			return m
		}
	}
	t.Fatalf("no volume %s in fixture %s", name, d.Name)
	return nil
}

func TestInfoVolumes(t *testing.T) {
	d := testimages.GetDisk(t, "gpt")
	r := runCmd(t, true, func(g *globalOptions) error { return runInfo(context.Background(), g, &infoOptions{}, d.Images) })
	if r.err != nil {
		t.Fatal(r.err)
	}
	var rep struct {
		Format  string                 `json:"format"`
		Disk    struct{ Table string } `json:"disk"`
		Volumes []struct {
			Name   string `json:"name"`
			Offset int64  `json:"offset"`
			Size   int64  `json:"size"`
			FS     string `json:"fs"`
			Label  string `json:"label"`
			UUID   string `json:"uuid"`
		} `json:"volumes"`
	}
	if err := json.Unmarshal([]byte(r.out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.out)
	}
	type vol struct {
		Name, FS, Label, UUID string
		Offset, Size          int64
	}
	var want, got []vol
	for _, v := range d.Volumes {
		want = append(want, vol{v.Name, v.FS, v.Label, v.UUID, v.Offset, v.Size})
	}
	for _, v := range rep.Volumes {
		got = append(got, vol{v.Name, v.FS, v.Label, v.UUID, v.Offset, v.Size})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("info --json volumes (-fixture +info):\n%s", diff)
	}
	if rep.Format != "raw" || rep.Disk.Table != "gpt" {
		t.Errorf("format %q table %q", rep.Format, rep.Disk.Table)
	}

	r = runCmd(t, false, func(g *globalOptions) error { return runInfo(context.Background(), g, &infoOptions{}, d.Images) })
	for _, want := range []string{"partition table: gpt", "volumes:\n", "  /p2   ext4", "/p4: not readable: swap space holds no files"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("info text lacks %q:\n%s", want, r.out)
		}
	}
}

func TestInfoVolumesSeveralDisks(t *testing.T) {
	d := testimages.GetDisk(t, "lvm")
	r := runCmd(t, true, func(g *globalOptions) error { return runInfo(context.Background(), g, &infoOptions{}, d.Images) })
	if r.err != nil {
		t.Fatal(r.err)
	}
	var reps []struct {
		Volumes []struct{ Path string } `json:"volumes"`
	}
	if err := json.Unmarshal([]byte(r.out), &reps); err != nil {
		t.Fatal(err)
	}
	paths := func(i int) (out []string) {
		for _, v := range reps[i].Volumes {
			out = append(out, v.Path)
		}
		return out
	}
	// disk0 holds root (linear on it) and the LVs spanning both; disk1
	// those spanning and none of root.
	if p := paths(0); p[0] != "/disk0/p1" || !slices.Contains(p, "/vg0-root") || !slices.Contains(p, "/vg0-stripe") {
		t.Errorf("disk0 volumes %v", p)
	}
	if p := paths(1); p[0] != "/disk1/fs" || slices.Contains(p, "/vg0-root") || !slices.Contains(p, "/vg0-stripe") {
		t.Errorf("disk1 volumes %v", p)
	}
	r = runCmd(t, false, func(g *globalOptions) error { return runInfo(context.Background(), g, &infoOptions{}, d.Images) })
	if strings.Count(r.out, "\n  /vg0-stripe ") != 1 || !strings.Contains(r.out, "logical volumes:") {
		t.Errorf("LVs not listed once at the end:\n%s", r.out)
	}
}

func TestLsVolumes(t *testing.T) {
	d := testimages.GetDisk(t, "gpt")
	img := d.Images[0]
	r := ls(t, false, lsOptions{}, img)
	if r.err != nil || r.out != "p1\np2\np3\np4\np5\n" {
		t.Errorf("ls IMAGE = %q, %v", r.out, r.err)
	}
	r = ls(t, false, lsOptions{Long: true}, img, "/")
	if !strings.Contains(r.out, "p2  ext4") || !strings.Contains(r.out, "(swap space holds no files)") {
		t.Errorf("ls -l /:\n%s", r.out)
	}
	r = ls(t, true, lsOptions{}, img, "/")
	var ents []struct {
		Name, Type string
		Volume     struct {
			FS       string `json:"fs"`
			Readable bool   `json:"readable"`
		}
	}
	if err := json.Unmarshal([]byte(r.out), &ents); err != nil || len(ents) != 5 || ents[1].Volume.FS != "ext4" || ents[3].Volume.Readable {
		t.Errorf("ls --json /: %v %+v", err, ents)
	}

	// Several images: disks first, LVs at the top; the last argument is
	// the path only when it starts with "/".
	l := testimages.GetDisk(t, "lvm")
	r = ls(t, false, lsOptions{}, l.Images...)
	if want := "disk0\ndisk1\nvg0-root\nvg0-span\nvg0-stripe\nvg0-raid\nvg0-mirror\n"; r.out != want {
		t.Errorf("ls IMAGE IMAGE = %q, want %q", r.out, want)
	}
	r = ls(t, false, lsOptions{}, append(l.Images, "/disk1")...)
	if r.out != "fs\n" {
		t.Errorf("ls /disk1 = %q", r.out)
	}
	r = ls(t, false, lsOptions{}, l.Images...) // absolute image paths, no PATH
	if r.err != nil {
		t.Errorf("absolute image paths: %v", r.err)
	}
}

// TestLsDirectory lists directories of each filesystem type and compares
// names, modes, sizes and targets with the oracle manifest.
func TestLsDirectory(t *testing.T) {
	d := testimages.GetDisk(t, "gpt")
	img := d.Images[0]
	for _, c := range []struct{ vol, dir string }{{"p2", "names"}, {"p2", "links"}, {"p2", "modes"}, {"p3", "x/win"}, {"p1", "."}} {
		m := oracleOf(t, d, c.vol)
		r := ls(t, true, lsOptions{Long: true}, img, path.Clean("/"+c.vol+"/"+c.dir))
		if r.err != nil {
			t.Errorf("%s/%s: %v", c.vol, c.dir, r.err)
			continue
		}
		var got []struct {
			Name   string `json:"name"`
			Mode   uint32 `json:"mode"`
			Size   int64  `json:"size"`
			Nlink  uint32 `json:"nlink"`
			Target string `json:"target"`
		}
		if err := json.Unmarshal([]byte(r.out), &got); err != nil {
			t.Fatal(err)
		}
		type ent struct {
			Name   string
			Mode   uint32
			Size   int64
			Target string
		}
		var want, have []ent
		for _, e := range m.Entries {
			if e.Path != "." && path.Dir(e.Path) == c.dir {
				want = append(want, ent{path.Base(e.Path), e.Mode, e.Size, e.Target})
			}
		}
		for _, g := range got {
			have = append(have, ent{g.Name, g.Mode, g.Size, g.Target})
		}
		slices.SortFunc(want, func(a, b ent) int { return strings.Compare(a.Name, b.Name) })
		opts := cmp.Options{}
		if c.vol != "p2" { // directory sizes and modes differ by design on NTFS and FAT oracles
			opts = append(opts, cmp.FilterPath(func(p cmp.Path) bool {
				s := p.Last().String()
				return s == ".Size" || s == ".Mode"
			}, cmp.Ignore()))
		}
		if diff := cmp.Diff(want, have, opts); diff != "" {
			t.Errorf("%s/%s (-oracle +ls):\n%s", c.vol, c.dir, diff)
		}
	}

	// Text: ls -b escapes, targets after "->".
	r := ls(t, false, lsOptions{}, img, "/p2/names")
	for _, want := range []string{"new\\nline\n", "tab\\tname\n", "back\\\\slash\n", "\\001ctrl\n", "Ελληνικά\n"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("ls /p2/names lacks %q:\n%s", want, r.out)
		}
	}
	r = ls(t, false, lsOptions{Long: true}, img, "/p3/x/win")
	if !strings.Contains(r.out, " symlink-relative -> Target Dir/inner.txt\n") || !strings.HasPrefix(r.out, "d") {
		t.Errorf("ls -l /p3/x/win:\n%s", r.out)
	}
}

// TestLsRecursive walks a whole filesystem with -R --json: every entry of
// the oracle, once.
func TestLsRecursive(t *testing.T) {
	d := testimages.GetDisk(t, "gpt")
	m := oracleOf(t, d, "p1")
	r := ls(t, true, lsOptions{Recursive: true}, d.Images[0], "/p1")
	if r.err != nil {
		t.Fatal(r.err)
	}
	var got []struct{ Path string }
	if err := json.Unmarshal([]byte(r.out), &got); err != nil {
		t.Fatal(err)
	}
	var want, have []string
	for _, e := range m.Entries {
		if e.Path != "." {
			want = append(want, "/p1/"+e.Path)
		}
	}
	for _, g := range got {
		have = append(have, g.Path)
	}
	slices.Sort(want)
	slices.Sort(have)
	if diff := cmp.Diff(want, have); diff != "" {
		t.Errorf("ls -R paths (-oracle +ls):\n%s", diff)
	}
	// Text -R: a header per directory.
	r = ls(t, false, lsOptions{Recursive: true}, d.Images[0], "/p1")
	if !strings.HasPrefix(r.out, "/p1:\n") || strings.Count(r.out, ":\n") < 3 {
		t.Errorf("ls -R text:\n%.500s", r.out)
	}
}

func TestCatAndStat(t *testing.T) {
	d := testimages.GetDisk(t, "gpt")
	img := d.Images[0]
	for _, vol := range []string{"p1", "p2", "p3"} {
		m := oracleOf(t, d, vol)
		// The first few regular files and a symlink of each volume.
		n := 0
		for _, e := range m.Entries {
			if e.Type() != "file" || e.Size > 1<<20 || n >= 5 {
				continue
			}
			n++
			p := "/" + vol + "/" + e.Path
			r := runCmd(t, false, func(g *globalOptions) error { return runCat(context.Background(), g, &catOptions{}, []string{img, p}) })
			if r.err != nil {
				t.Errorf("cat %s: %v", p, r.err)
				continue
			}
			sum := sha256.Sum256([]byte(r.out))
			if hex.EncodeToString(sum[:]) != e.SHA256 {
				t.Errorf("cat %s: content differs from the oracle", p)
			}
			checkStat(t, img, p, e)
		}
	}
	// A symlink, an fs root, a device or FIFO where the fixture has one.
	m := oracleOf(t, d, "p2")
	for _, e := range m.Entries {
		if e.Type() == "symlink" || e.Type() == "char" || e.Type() == "fifo" || e.Path == "." {
			p := "/p2/" + e.Path
			if e.Path == "." {
				p = "/p2"
			}
			checkStat(t, img, p, e)
		}
	}
	r := runCmd(t, false, func(g *globalOptions) error {
		return runStat(context.Background(), g, &statOptions{}, []string{img, "/p2/links"})
	})
	for _, want := range []string{"  File: /p2/links\n", "  Type: directory\n", "Modify: ", "Volume: /p2 (ext4)\n"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("stat text lacks %q:\n%s", want, r.out)
		}
	}
}

func checkStat(t *testing.T, img, p string, e testimages.Entry) {
	t.Helper()
	r := runCmd(t, true, func(g *globalOptions) error {
		return runStat(context.Background(), g, &statOptions{}, []string{img, p})
	})
	if r.err != nil {
		t.Errorf("stat %s: %v", p, r.err)
		return
	}
	var st struct {
		fsread.Stat
		Target string   `json:"target"`
		Xattrs []string `json:"xattrs"`
	}
	if err := json.Unmarshal([]byte(r.out), &st); err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range e.Xattrs {
		names = append(names, n)
	}
	slices.Sort(names)
	slices.Sort(st.Xattrs)
	fat := strings.HasPrefix(p, "/p1")
	ntfs := strings.HasPrefix(p, "/p3")
	got := fmt.Sprintf("mode %o uid %d gid %d size %d nlink %d mtime %s target %q", st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtime.UTC(), st.Target)
	want := fmt.Sprintf("mode %o uid %d gid %d size %d nlink %d mtime %s target %q", e.Mode, e.Uid, e.Gid, e.Size, e.Nlink, e.Mtime.UTC(), e.Target)
	if fat || ntfs {
		// Those oracles leave out what the filesystems do not store
		// (FAT: owners, modes) or what ntfs-3g maps (owners): compare
		// size, target and mtime, as their readers' own tests do.
		got = fmt.Sprintf("size %d mtime %d target %q", st.Size, st.Mtime.Unix(), st.Target)
		want = fmt.Sprintf("size %d mtime %d target %q", e.Size, e.Mtime.Unix(), e.Target)
	}
	if got != want {
		t.Errorf("stat %s:\n got %s\nwant %s", p, got, want)
	}
	if !fat && !ntfs && !slices.Equal(names, st.Xattrs) {
		t.Errorf("stat %s: xattrs %v, want %v", p, st.Xattrs, names)
	}
}

func TestVolumeCommandErrors(t *testing.T) {
	d := testimages.GetDisk(t, "gpt")
	img := d.Images[0]
	for _, c := range []struct {
		name string
		run  func(g *globalOptions) error
		code int
		msg  string
	}{
		{"no such volume", func(g *globalOptions) error {
			return runLs(context.Background(), g, &lsOptions{}, []string{img, "/p9"})
		}, exitNotFound, "no such volume in / (it has p1, p2, p3, p4, p5)"},
		{"no such file", func(g *globalOptions) error {
			return runCat(context.Background(), g, &catOptions{}, []string{img, "/p2/nope"})
		}, exitNotFound, "/p2/nope"},
		{"swap", func(g *globalOptions) error {
			return runLs(context.Background(), g, &lsOptions{}, []string{img, "/p4"})
		}, exitBadInput, "swap space holds no files"},
		{"cat a directory", func(g *globalOptions) error {
			return runCat(context.Background(), g, &catOptions{}, []string{img, "/p2/links"})
		}, exitError, "is a directory"},
		{"cat without path", func(g *globalOptions) error {
			return runCat(context.Background(), g, &catOptions{}, []string{img, "p2/x"})
		}, exitUsage, "must be a path starting with /"},
		{"image as path", func(g *globalOptions) error {
			return runCat(context.Background(), g, &catOptions{}, []string{img, img})
		}, exitUsage, "the last argument is a file on this host"},
		{"missing image", func(g *globalOptions) error {
			return runStat(context.Background(), g, &statOptions{}, []string{"/nonexistent.img", "/p1"})
		}, exitNotFound, "nonexistent"},
	} {
		r := runCmd(t, false, c.run)
		if r.err == nil || exitCode(r.err) != c.code || !strings.Contains(r.err.Error(), c.msg) {
			t.Errorf("%s: %v (exit %d); want exit %d saying %q", c.name, r.err, exitCode(r.err), c.code, c.msg)
		}
	}
}

func TestEscapeName(t *testing.T) {
	for in, want := range map[string]string{
		"plain": "plain", "a b": "a b", "new\nline": `new\nline`, `back\slash`: `back\\slash`,
		"\x01": `\001`, "bad\xffutf8": `bad\377utf8`, "中文": "中文", "\u0085": `\302\205`,
	} {
		if got := escapeName(in); got != want {
			t.Errorf("escapeName(%q) = %q, want %q", in, got, want)
		}
	}
}
