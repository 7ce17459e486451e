package nbd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

// qemuNBD serves image read-only on a Unix socket with qemu-nbd, exposing
// bitmap when set, until the test ends.
func qemuNBD(t *testing.T, image, bitmap string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	args := []string{"-r", "-t", "-f", "qcow2", "-k", sock, "-x", "disk"}
	if bitmap != "" {
		args = append(args, "-B", bitmap)
	}
	cmd := exec.Command("qemu-nbd", append(args, image)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if i > 200 {
			t.Fatalf("qemu-nbd did not create %s: %s", sock, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testImage makes a qcow2 image with data, zero clusters and holes, adds a
// persistent bitmap "bm", then writes two more ranges (which the bitmap
// records). It returns the image and the raw oracle.
func testImage(t *testing.T) (image, raw string) {
	t.Helper()
	testimages.RequireTools(t, "qemu-img", "qemu-io", "qemu-nbd")
	dir := t.TempDir()
	image = filepath.Join(dir, "disk.qcow2")
	testimages.MustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", image, "64M")
	testimages.MustRun(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 3M 200k",
		"-c", "write -z 5M 1M", "-c", "write -P 0x33 63M 1M", image)
	testimages.MustRun(t, "qemu-img", "bitmap", "--add", image, "bm")
	testimages.MustRun(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x44 10M 64k", "-c", "write -P 0x55 20M 4k", image)
	raw = filepath.Join(dir, "disk.raw")
	testimages.MustRun(t, "qemu-img", "convert", "-O", "raw", image, raw)
	return image, raw
}

func TestReadAndAllocationAgainstQemu(t *testing.T) {
	image, raw := testImage(t)
	sock := qemuNBD(t, image, "bm")
	ctx := context.Background()
	c, err := Dial(ctx, "unix", sock, Options{Export: "disk", MetaContexts: []string{"base:allocation", "qemu:dirty-bitmap:bm"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Size() != int64(len(want)) || !c.ReadOnly() {
		t.Fatalf("size %d read-only %v, want %d true", c.Size(), c.ReadOnly(), len(want))
	}

	// Whole disk in one call (split into several requests), then
	// concurrent odd-sized reads.
	got := make([]byte, len(want))
	if n, err := c.ReadAt(got, 0); err != nil || n != len(got) || !bytes.Equal(got, want) {
		t.Fatalf("ReadAt whole disk: %d, %v, equal %v", n, err, bytes.Equal(got, want))
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := int64(i)*7<<20 + 12345
			b := make([]byte, 3<<20+777)
			if _, err := c.ReadAt(b, off); err != nil || !bytes.Equal(b, want[off:off+int64(len(b))]) {
				t.Errorf("concurrent read at %d: %v", off, err)
			}
		}()
	}
	wg.Wait()
	// Past the end.
	b := make([]byte, 1000)
	if n, err := c.ReadAt(b, c.Size()-100); n != 100 || err != io.EOF || !bytes.Equal(b[:100], want[len(want)-100:]) {
		t.Errorf("read across the end: %d %v", n, err)
	}

	// base:allocation against qemu-img map: every range qemu-img reports
	// as data is data (not a hole) in NBD's view, and vice versa.
	out := testimages.MustRun(t, "qemu-img", "map", "--output=json", "-f", "qcow2", image)
	var qmap []struct {
		Start, Length int64
		Data, Zero    bool
	}
	if err := json.Unmarshal([]byte(out), &qmap); err != nil {
		t.Fatal(err)
	}
	exts := allExtents(t, c, "base:allocation")
	for _, q := range qmap {
		for _, e := range overlapping(exts, q.Start, q.Length) {
			hole := e.Flags&StateHole != 0
			zero := e.Flags&StateZero != 0
			if q.Data == hole || (q.Zero && !zero) {
				t.Errorf("qemu-img map %+v, nbd %+v", q, e)
			}
		}
	}

	// The bitmap records exactly the clusters written after it was added.
	var dirty [][2]int64
	for _, e := range allExtents(t, c, "qemu:dirty-bitmap:bm") {
		if e.Flags&1 != 0 {
			dirty = append(dirty, [2]int64{e.Off, e.Off + e.Len})
		}
	}
	wantDirty := [][2]int64{{10 << 20, 10<<20 + 64<<10}, {20 << 20, 20<<20 + 64<<10}}
	if len(dirty) != 2 || dirty[0] != wantDirty[0] || dirty[1] != wantDirty[1] {
		t.Errorf("dirty ranges %v, want %v", dirty, wantDirty)
	}
}

func allExtents(t *testing.T, c *Conn, ctxName string) []Extent {
	t.Helper()
	var out []Extent
	for off := int64(0); off < c.Size(); {
		es, err := c.BlockStatus(ctxName, off, c.Size()-off)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, es...)
		last := es[len(es)-1]
		off = last.Off + last.Len
	}
	return out
}

func overlapping(es []Extent, off, n int64) []Extent {
	var out []Extent
	for _, e := range es {
		if e.Off < off+n && off < e.Off+e.Len {
			out = append(out, e)
		}
	}
	return out
}

func TestMissingContextAndExport(t *testing.T) {
	image, _ := testImage(t)
	sock := qemuNBD(t, image, "")
	ctx := context.Background()
	if _, err := Dial(ctx, "unix", sock, Options{Export: "disk", MetaContexts: []string{"qemu:dirty-bitmap:nope"}}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("missing context: %v, want ErrUnsupported", err)
	}
	var se *ServerError
	if _, err := Dial(ctx, "unix", sock, Options{Export: "other"}); !errors.As(err, &se) {
		t.Errorf("missing export: %v, want a ServerError", err)
	}
	c, err := Dial(ctx, "unix", sock, Options{Export: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.BlockStatus("base:allocation", 0, 512); !errors.Is(err, ErrUnsupported) {
		t.Errorf("block status of a context not negotiated: %v", err)
	}
	c.Close()
	if _, err := c.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
}
