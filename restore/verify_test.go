package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
)

// TestCheckedImageReads reads a checked raw image at random offsets and
// lengths (small reads inside a block, across two, large unaligned ones):
// every read returns the image's bytes; a damaged block fails exactly the
// reads that touch it, naming it.
func TestCheckedImageReads(t *testing.T) {
	const size = 40*repo.HashBlockSize + 1234 // a short last block
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	clear(data[5*repo.HashBlockSize : 9*repo.HashBlockSize]) // zeros, not holes
	sums := repo.NewBlockHashes(size, repo.HashBlockSize)
	for i := range sums.Sums {
		lo := int64(i) * repo.HashBlockSize
		sums.Sums[i] = sha256.Sum256(data[lo : lo+sums.BlockLen(i)])
	}
	const bad = 17
	damaged := append([]byte(nil), data...)
	damaged[bad*repo.HashBlockSize+100] ^= 1
	name := filepath.Join(t.TempDir(), "disk.raw")
	os.WriteFile(name, damaged, 0o644)
	img, err := imagefmt.OpenWith(name, imagefmt.Options{Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	c, err := newCheckedImage(img, "test/vda", sums)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.checkHoles(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		var n int
		switch i % 3 {
		case 0:
			n = 1 + rng.IntN(8192)
		case 1:
			n = 1 + rng.IntN(2*repo.HashBlockSize)
		default:
			n = 1 + rng.IntN(6*repo.HashBlockSize)
		}
		off := rng.Int64N(size + 100)
		p := make([]byte, n)
		k, err := c.ReadAt(p, off)
		end := min(off+int64(n), size)
		touchesBad := off < (bad+1)*repo.HashBlockSize && end > bad*repo.HashBlockSize
		var be *BlockError
		switch {
		case touchesBad && off < size:
			if !errors.As(err, &be) || be.Block != bad || !errors.Is(err, repo.ErrCorrupt) {
				t.Fatalf("read %d at %d touches the damaged block: %v", n, off, err)
			}
		case off >= size:
			if k != 0 || err != io.EOF {
				t.Fatalf("read at %d past the end: %d %v", off, k, err)
			}
		default:
			if err != nil && !(err == io.EOF && end == size) {
				t.Fatalf("read %d at %d: %v", n, off, err)
			}
			if int64(k) != end-off || !bytes.Equal(p[:k], data[off:end]) {
				t.Fatalf("read %d at %d: %d bytes, content differs", n, off, k)
			}
		}
	}
	if err := c.checkRest(context.Background()); !errors.Is(err, repo.ErrCorrupt) {
		t.Errorf("checkRest: %v, want the damaged block", err)
	}
}
