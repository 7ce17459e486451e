package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/testimages"
)

// TestTarExtFixture writes the ext4 fixture's volume as a tar stream,
// extracts it with GNU tar (an independent reader of pax, GNU sparse 1.0
// and SCHILY.xattr) and compares the tree with the fixture's oracle. Go's
// archive/tar reads the stream too, sparse entries included.
func TestTarExtFixture(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ext fixtures")
	}
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "tar")
	for _, name := range []string{"ext4", "ext2-1k"} {
		t.Run(name, func(t *testing.T) {
			x := testimages.GetExt(t, extVariant(t, name))
			want, err := x.Oracle()
			if err != nil {
				t.Fatal(err)
			}
			src, err := ImageSource(context.Background(), []string{x.Image}, "raw")
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			items, _, err := src.Items([]string{"/fs"}, false)
			if err != nil {
				t.Fatal(err)
			}
			dir := fastTempDir(t)
			tarFile := filepath.Join(dir, "out.tar")
			f, err := os.Create(tarFile)
			if err != nil {
				t.Fatal(err)
			}
			var errs []string
			sum, err := WriteTar(context.Background(), f, items, TarOptions{Xattrs: true,
				OnError: func(g string, err error) { errs = append(errs, ShowPath(g)+": "+err.Error()) }})
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", *sum)
			if len(errs) > 0 {
				t.Errorf("errors:\n%s", strings.Join(errs, "\n"))
			}
			sockets := socketPaths(want)
			if sum.Skipped != int64(len(sockets)) {
				t.Errorf("skipped %d entries, want %d (the sockets)", sum.Skipped, len(sockets))
			}
			for _, p := range sockets {
				want.Remove(p)
			}
			checkGoTar(t, tarFile, want)

			out := filepath.Join(dir, "x")
			os.Mkdir(out, 0o755)
			testimages.MustRun(t, "tar", "-x", "-p", "--same-owner", "--xattrs", "--xattrs-include=*", "--acls",
				"--atime-preserve=system", "-f", tarFile, "-C", out)
			got, err := testimages.ScanDir(filepath.Join(out, "fs"))
			if err != nil {
				t.Fatal(err)
			}
			co := restoreCompare()
			// GNU tar does not set atimes from the archive.
			co.Fields &^= testimages.FieldAtime
			if d := testimages.Compare(want, got, co); len(d) > 0 {
				t.Errorf("extracted tree differs from the oracle (-want +got):\n%s", strings.Join(d, "\n"))
			}
			checkSparse(t, want, filepath.Join(out, "fs"))
		})
	}
}

func extVariant(t *testing.T, name string) testimages.ExtVariant {
	for _, v := range testimages.ExtVariants {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no ext variant %s", name)
	return testimages.ExtVariant{}
}

func socketPaths(m *testimages.Manifest) (out []string) {
	for _, e := range m.Entries {
		if e.Type() == "socket" {
			out = append(out, e.Path)
		}
	}
	return out
}

// checkGoTar reads the archive with archive/tar and checks each regular
// file's content, symlink target, times and hardlinks against the oracle.
func checkGoTar(t *testing.T, name string, want *testimages.Manifest) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	n, sparse := 0, 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("archive/tar: %v", err)
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(h.Name, "fs"), "/"), "/")
		if rel == "" {
			rel = "."
		}
		e := want.Get(rel)
		if e == nil {
			t.Errorf("archive/tar: unexpected %q", h.Name)
			continue
		}
		n++
		if h.Format != tar.FormatPAX {
			t.Errorf("%s: format %v", h.Name, h.Format)
		}
		if _, ok := h.PAXRecords["GNU.sparse.major"]; ok {
			sparse++
		}
		if !h.ModTime.Equal(e.Mtime) || !h.AccessTime.Equal(e.Atime) {
			t.Errorf("%s: times %v %v, want %v %v", h.Name, h.ModTime, h.AccessTime, e.Mtime, e.Atime)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			hs := sha256.New()
			if _, err := io.Copy(hs, tr); err != nil {
				t.Fatalf("%s: %v", h.Name, err)
			}
			if got := hex.EncodeToString(hs.Sum(nil)); got != e.SHA256 || h.Size != e.Size {
				t.Errorf("%s: %d bytes sha256 %s, want %d %s", h.Name, h.Size, got[:16], e.Size, e.SHA256)
			}
		case tar.TypeSymlink:
			if h.Linkname != e.Target {
				t.Errorf("%s: target %q, want %q", h.Name, h.Linkname, e.Target)
			}
		}
	}
	if n != len(want.Entries) {
		t.Errorf("archive/tar read %d entries, want %d", n, len(want.Entries))
	}
	if sparse == 0 {
		t.Errorf("no sparse entry in the archive")
	}
}

// TestPaxRecord checks the self-counting length of extended records at
// digit boundaries.
func TestPaxRecord(t *testing.T) {
	for _, n := range []int{0, 1, 4, 5, 6, 92, 93, 94, 95, 96, 97, 98, 990, 995, 996, 997} {
		v := strings.Repeat("v", n)
		rec := paxRecord("k", v)
		var l int
		for _, c := range rec {
			if c == ' ' {
				break
			}
			l = l*10 + int(c-'0')
		}
		if l != len(rec) {
			t.Errorf("value of %d bytes: record says %d, is %d", n, l, len(rec))
		}
	}
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Unix(0, 0), "0"},
		{time.Unix(5, 100), "5.000000100"},
		{time.Unix(-2, 750000000), "-1.250000000"},
		{time.Unix(-1, 0), "-1"},
	} {
		if got := paxTime(c.t); got != c.want {
			t.Errorf("paxTime(%v) = %s, want %s", c.t, got, c.want)
		}
	}
}

// TestTarWriteFailure: a stream that fails ends the restore with an error.
func TestTarWriteFailure(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), bytes.Repeat([]byte("x"), 3<<20), 0o644)
	h, err := testimages.NewHostFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = WriteTar(context.Background(), failWriter{}, []Item{{Guest: "/t", FS: h, Ino: h.Root(), Rel: []string{"t"}}}, TarOptions{})
	if !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("WriteTar to a failing writer: %v, want EPIPE", err)
	}
	_ = fsys.Range{}
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, syscall.EPIPE }
