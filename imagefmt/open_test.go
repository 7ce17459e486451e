package imagefmt_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/imagefmt/qcow2"
	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/testimages"
)

// Tests of Open: format detection by content, backing chains through the
// opener (formats, relative and absolute names, loops, missing files,
// depth), NoBacking. The qcow2 reader itself is tested in its package.

func fixture(t *testing.T, name string) testimages.Qcow2Fixture {
	t.Helper()
	for _, fx := range testimages.Qcow2Fixtures(t) {
		if fx.Name == name {
			return fx
		}
	}
	t.Fatalf("no qcow2 fixture %q", name)
	return testimages.Qcow2Fixture{}
}

func sum(t *testing.T, r io.Reader) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, r, make([]byte, 4<<20)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// TestOpenQcow2Fixtures opens every qcow2 fixture through imagefmt.Open,
// from a name that says nothing of the format, and compares all of its
// bytes with qemu-img convert's.
func TestOpenQcow2Fixtures(t *testing.T) {
	for _, fx := range testimages.Qcow2Fixtures(t) {
		t.Run(fx.Name, func(t *testing.T) {
			// A symlink named like a raw disk beside the image, so relative
			// backing and data file names still resolve.
			alias := filepath.Join(t.TempDir(), "disk.img")
			if err := os.Symlink(fx.Path, alias); err != nil {
				t.Fatal(err)
			}
			img, err := imagefmt.Open(fx.Path)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if f := img.Info().Format; f != imagefmt.FormatQcow2 {
				t.Fatalf("format %q", f)
			}
			if n := len(img.Info().Chain()); n != fx.Depth+1 {
				t.Errorf("chain of %d images, want %d", n, fx.Depth+1)
			}
			raw, err := os.Open(fx.Raw)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			if sum(t, io.NewSectionReader(img, 0, img.Size())) != sum(t, raw) {
				t.Errorf("content differs from qemu-img convert")
			}
			if fx.Depth == 0 {
				f, err := vdisk.OpenOSFile(alias)
				if err != nil {
					t.Fatal(err)
				}
				format, err := imagefmt.Detect(f)
				f.Close()
				if err != nil || format != imagefmt.FormatQcow2 {
					t.Errorf("Detect(%s) = %q, %v", alias, format, err)
				}
			}
		})
	}
}

// TestOpenChainInfo checks the chain a three-deep image reports: names as
// recorded (absolute, then relative with ..), formats from the backing
// format extension.
func TestOpenChainInfo(t *testing.T) {
	fx := fixture(t, "chain3")
	img, err := imagefmt.Open(fx.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	chain := img.Info().Chain()
	if len(chain) != 3 {
		t.Fatalf("chain of %d", len(chain))
	}
	if !filepath.IsAbs(chain[0].BackingFilename) || chain[0].BackingFormat != "qcow2" {
		t.Errorf("top: backing %q (%s), want an absolute name and qcow2", chain[0].BackingFilename, chain[0].BackingFormat)
	}
	if chain[1].BackingFilename != "../base.qcow2" || chain[1].Filename != chain[0].BackingFilename {
		t.Errorf("middle: %s backed by %q", chain[1].Filename, chain[1].BackingFilename)
	}
	if chain[2].BackingFilename != "" || !strings.HasSuffix(chain[2].Filename, "base.qcow2") {
		t.Errorf("base: %s backed by %q", chain[2].Filename, chain[2].BackingFilename)
	}

	raw := fixture(t, "chain-raw")
	img2, err := imagefmt.Open(raw.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer img2.Close()
	if b := img2.Info().Backing; b == nil || b.Format != "raw" || img2.Info().BackingFormat != "raw" {
		t.Errorf("raw backing: %+v", b)
	}
}

// TestOpenNoBacking opens the top of a chain alone: what lower layers hold
// reads as zeros and maps as unallocated.
func TestOpenNoBacking(t *testing.T) {
	fx := fixture(t, "chain3")
	img, err := imagefmt.OpenWith(fx.Path, imagefmt.Options{NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	in := img.Info()
	if in.Backing != nil || in.BackingFilename == "" {
		t.Errorf("NoBacking: Backing %v, BackingFilename %q", in.Backing, in.BackingFilename)
	}
	// 12 MiB..13 MiB is base data (0xa3), not in the top layer.
	buf := make([]byte, 4096)
	if _, err := img.ReadAt(buf, 12<<20); err != nil || !bytes.Equal(buf, make([]byte, 4096)) {
		t.Errorf("NoBacking read of a lower layer's data: %v %x", err, buf[:8])
	}
	ex, err := img.Extents(0, img.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ex {
		if e.Layer > 0 {
			t.Errorf("NoBacking extent from layer %d: %+v", e.Layer, e)
		}
	}
}

func TestOpenForcedFormat(t *testing.T) {
	fx := fixture(t, "v3")
	img, err := imagefmt.OpenWith(fx.Path, imagefmt.Options{Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(fx.Path)
	if img.Info().Format != "raw" || img.Size() != st.Size() {
		t.Errorf("forced raw: %s of %d bytes", img.Info().Format, img.Size())
	}
	img.Close()
	_, err = imagefmt.OpenWith(fx.Raw, imagefmt.Options{Format: "qcow2"})
	if !errors.Is(err, imagefmt.ErrFormat) || !strings.Contains(err.Error(), "magic") {
		t.Errorf("raw file opened as qcow2: %v", err)
	}
}

// qemuImg runs qemu-img in dir.
func qemuImg(t *testing.T, dir string, args ...string) {
	t.Helper()
	if _, err := testimages.RunIn(dir, nil, "qemu-img", args...); err != nil {
		t.Fatal(err)
	}
}

func TestOpenBackingLoops(t *testing.T) {
	testimages.RequireTools(t, "qemu-img")
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "a.qcow2", "1M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "self.qcow2", "1M")
	qemuImg(t, dir, "rebase", "-u", "-b", "self.qcow2", "-F", "qcow2", "self.qcow2")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "c.qcow2", "1M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-b", "c.qcow2", "-F", "qcow2", "d.qcow2")
	if err := os.Symlink("d.qcow2", filepath.Join(dir, "alias-of-d.qcow2")); err != nil {
		t.Fatal(err)
	}
	// a -> b -> a; c -> d -> c through another name of d.
	qemuImg(t, dir, "rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2")
	qemuImg(t, dir, "rebase", "-u", "-b", "alias-of-d.qcow2", "-F", "qcow2", "c.qcow2")
	for _, name := range []string{"a.qcow2", "b.qcow2", "self.qcow2", "c.qcow2", "alias-of-d.qcow2"} {
		_, err := imagefmt.Open(filepath.Join(dir, name))
		if !errors.Is(err, imagefmt.ErrBackingLoop) {
			t.Errorf("%s: %v, want a backing loop", name, err)
			continue
		}
		var fe *imagefmt.FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), dir) {
			t.Errorf("%s: %v does not name the file", name, err)
		}
	}
}

func TestOpenBackingMissing(t *testing.T) {
	testimages.RequireTools(t, "qemu-img")
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "base.qcow2", "1M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "mid.qcow2")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2")
	os.Remove(filepath.Join(dir, "base.qcow2"))
	_, err := imagefmt.Open(filepath.Join(dir, "top.qcow2"))
	if !errors.Is(err, imagefmt.ErrBackingMissing) || !strings.Contains(err.Error(), "base.qcow2") || !strings.Contains(err.Error(), "mid.qcow2") {
		t.Errorf("missing base: %v", err)
	}
	// Opened alone, the top layer does not need it.
	img, err := imagefmt.OpenWith(filepath.Join(dir, "top.qcow2"), imagefmt.Options{NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
}

// TestOpenBackingFormatPassedThrough: the format an image records for its
// backing file is used, not detected: a qcow2 file named as raw backing
// reads as its raw bytes, a raw file named as qcow2 fails.
func TestOpenBackingFormatPassedThrough(t *testing.T) {
	testimages.RequireTools(t, "qemu-img")
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "q.qcow2", "1M")
	qemuImg(t, dir, "create", "-q", "-f", "raw", "r.raw", "1M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-u", "-b", "q.qcow2", "-F", "raw", "over-q.qcow2", "1M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-u", "-b", "r.raw", "-F", "qcow2", "over-r.qcow2", "1M")
	img, err := imagefmt.Open(filepath.Join(dir, "over-q.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	magic := make([]byte, 4)
	img.ReadAt(magic, 0)
	if img.Info().Backing.Format != "raw" || string(magic) != "QFI\xfb" {
		t.Errorf("qcow2 file as raw backing: format %s, first bytes %q", img.Info().Backing.Format, magic)
	}
	img.Close()
	if _, err := imagefmt.Open(filepath.Join(dir, "over-r.qcow2")); !errors.Is(err, imagefmt.ErrFormat) {
		t.Errorf("raw file as qcow2 backing: %v", err)
	}
}

// TestOpenChainTooDeep makes a chain one longer than the bound.
func TestOpenChainTooDeep(t *testing.T) {
	if testing.Short() {
		t.Skip("makes a thousand images")
	}
	dir := t.TempDir()
	prev := ""
	for i := 0; i <= vdisk.MaxChainDepth+1; i++ {
		name := filepath.Join(dir, fmt.Sprintf("l%04d.qcow2", i))
		opts := qcow2.CreateOptions{ClusterSize: 512}
		if prev != "" {
			opts.BackingFile, opts.BackingFormat = filepath.Base(prev), "qcow2"
		}
		if err := qcow2.Create(name, 1<<20, opts); err != nil {
			t.Fatal(err)
		}
		prev = name
	}
	_, err := imagefmt.Open(prev)
	if !errors.Is(err, imagefmt.ErrFormat) || !strings.Contains(err.Error(), "deeper than") {
		t.Errorf("chain of %d: %v", vdisk.MaxChainDepth+2, err)
	}
}
