package part

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// FuzzRead feeds whole small disks to Read: crafted MBR/EBR chains and GPTs
// (512 and 4096-byte sectors, hybrid, damaged) and, when the tools are
// installed, tables written by sfdisk and sgdisk.
func FuzzRead(f *testing.F) {
	const size = 32 << 10 // small inputs keep the fuzzer (and its minimizer) fast
	d := make([]byte, size)
	putMBR(d, 0, 0x1234, mbrPart{}, mbrPart{typ: 0x83, start: 8, size: 8}, mbrPart{typ: 0x05, start: 20, size: 40})
	putMBR(d, 20*512, 0, mbrPart{typ: 0x83, start: 1, size: 4}, mbrPart{typ: 0x05, start: 16, size: 16})
	putMBR(d, 36*512, 0, mbrPart{typ: 0x82, start: 1, size: 4}, mbrPart{typ: 0x05, start: 0, size: 16}) // loops
	f.Add(d)
	for _, ss := range []int64{512, 4096} {
		spec := gptSpec{ss: ss, size: size, numEntries: 4, parts: []gptPart{
			{index: 0, typ: guidESP, first: 12288 / uint64(ss), last: 16383 / uint64(ss), name: "esp"},
			{index: 2, typ: guidLinux, first: 16384 / uint64(ss), last: 24575 / uint64(ss)},
		}}
		f.Add(buildGPT(spec))
		spec.hybrid = []mbrPart{{typ: 0x0c, start: 24, size: 8}}
		g := buildGPT(spec)
		f.Add(g)
		g = bytes.Clone(g)
		g[ss+20] ^= 1 // primary damaged
		f.Add(g)
	}
	for _, script := range []string{
		"label: dos\nstart=8, size=16, type=83\nstart=26, size=30, type=5\nstart=28, size=10\nstart=40, size=10\n",
		"label: gpt\ntable-length: 4\nfirst-lba: 3\nstart=34, size=8, type=L, name=a\nstart=42, size=8, type=S\n",
	} {
		if b, ok := sfdiskSeed(f, script, size); ok {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, disk []byte) {
		for _, ss := range []int{0, 4096} {
			tab, err := Read(bytes.NewReader(disk), int64(len(disk)), Options{SectorSize: ss})
			if err != nil {
				if tab != nil {
					t.Fatalf("table and error: %v", err)
				}
				continue
			}
			seen := map[int]bool{}
			for _, p := range tab.Partitions {
				if p.Number < 1 || p.Number > MaxPartitions || seen[p.Number] {
					t.Fatalf("bad or repeated number %d", p.Number)
				}
				seen[p.Number] = true
				if p.Start < 0 || p.Size <= 0 || p.Start+p.Size > int64(len(disk)) {
					t.Fatalf("partition %d [%d, +%d) outside a disk of %d bytes", p.Number, p.Start, p.Size, len(disk))
				}
			}
		}
	})
}

// sfdiskSeed writes a table with sfdisk on a small image; ok is false when
// sfdisk is not installed (seeds are extra, not the test).
func sfdiskSeed(f *testing.F, script string, size int64) ([]byte, bool) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		return nil, false
	}
	img := filepath.Join(f.TempDir(), "seed.img")
	if err := os.WriteFile(img, make([]byte, size), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := runStdin(script, "sfdisk", "-q", "--no-reread", "--no-tell-kernel", img); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	return b, true
}
