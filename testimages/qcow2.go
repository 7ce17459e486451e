package testimages

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// qcow2 fixtures: every variant the qcow2 reader handles, made by qemu-img
// and qemu-io, each with qemu's view of it beside the image as the oracle:
// IMAGE.raw (`qemu-img convert -O raw`), IMAGE.map.json (`qemu-img map
// --output=json`) and IMAGE.info.json (`qemu-img info --backing-chain
// --output=json`).
//
// Two cached directories: qcow2-lower holds the lower layers of the chain
// whose top names its backing file by absolute path (the path must exist
// when the top is made and stay valid after, so it cannot live in the
// directory being built); qcow2-variants holds everything else.

const (
	qcow2LowerVersion    = "v1"
	qcow2VariantsVersion = "v1"
)

// Qcow2Fixture is one qcow2 test image and its oracle files.
type Qcow2Fixture struct {
	Name string // variant, e.g. "v3-zstd"
	Path string // the image to open: the top of its chain
	Raw  string // qemu-img convert -O raw of Path
	Map  string // qemu-img map --output=json of Path
	Info string // qemu-img info --backing-chain --output=json of Path
	// RawLayers are the depths of the chain whose image is a raw file.
	// qemu-img map reports the holes of a raw file as zero data of that
	// layer, vmmount as unallocated (both read as zeros).
	RawLayers []int
	// Depth is the number of backing files below Path.
	Depth int
}

// qcow2Variant is a recipe: build makes Path (relative to the directory)
// with whatever it needs beside it.
type qcow2Variant struct {
	name      string
	path      string
	rawLayers []int
	depth     int
	build     func(b *qcow2Builder)
}

// Qcow2Fixtures builds (once, cached) and returns every qcow2 fixture.
// Requires qemu-img and qemu-io.
func Qcow2Fixtures(t testing.TB) []Qcow2Fixture {
	t.Helper()
	RequireTools(t, "qemu-img", "qemu-io")
	lower := Get(t, "qcow2-lower", qcow2LowerVersion, buildQcow2Lower)
	// chain3's top records this path: it must not depend on the cwd.
	lower, err := filepath.Abs(lower)
	if err != nil {
		t.Fatal(err)
	}
	dir := Get(t, "qcow2-variants", qcow2VariantsVersion+"-"+qcow2LowerVersion, func(dir string) error {
		return buildQcow2Variants(dir, lower)
	})
	var out []Qcow2Fixture
	for _, v := range qcow2Variants(lower) {
		p := filepath.Join(dir, v.path)
		out = append(out, Qcow2Fixture{Name: v.name, Path: p, Raw: p + ".raw", Map: p + ".map.json",
			Info: p + ".info.json", RawLayers: v.rawLayers, Depth: v.depth})
	}
	return out
}

// Qcow2Encrypted returns a small LUKS-encrypted qcow2 image (passphrase
// "vmmount"), which the reader must refuse.
func Qcow2Encrypted(t testing.TB) string {
	t.Helper()
	RequireTools(t, "qemu-img")
	dir := Get(t, "qcow2-encrypted", "v1", func(dir string) error {
		_, err := RunIn(dir, nil, "qemu-img", "create", "-q", "-f", "qcow2",
			"--object", "secret,id=sec0,data=vmmount",
			"-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
			"luks.qcow2", "1M")
		return err
	})
	return filepath.Join(dir, "luks.qcow2")
}

// qcow2Builder runs the tools of one recipe in its directory, keeping the
// first error.
type qcow2Builder struct {
	dir string
	err error
}

func (b *qcow2Builder) run(name string, args ...string) {
	if b.err != nil {
		return
	}
	_, b.err = RunIn(b.dir, nil, name, args...)
}

// img runs qemu-img.
func (b *qcow2Builder) img(args ...string) { b.run("qemu-img", args...) }

// create runs qemu-img create -f qcow2 with options opts (may be empty).
func (b *qcow2Builder) create(file, size, opts string, extra ...string) {
	args := []string{"create", "-q", "-f", "qcow2"}
	if opts != "" {
		args = append(args, "-o", opts)
	}
	args = append(args, extra...)
	b.img(append(args, file, size)...)
}

// io runs qemu-io commands on file, e.g. "write -P 0xaa 0 64k".
func (b *qcow2Builder) io(file string, cmds ...string) {
	args := []string{}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	b.run("qemu-io", append(args, file)...)
}

// source writes a raw file of size bytes for qemu-img convert: compressible
// text, incompressible noise, zeros and holes, so compressed images mix
// compressed, uncompressed and unallocated clusters.
func (b *qcow2Builder) source(file string, size int64) {
	if b.err != nil {
		return
	}
	f, err := os.Create(filepath.Join(b.dir, file))
	if err != nil {
		b.err = err
		return
	}
	defer f.Close()
	if b.err = f.Truncate(size); b.err != nil {
		return
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const piece = 256 << 10
	for off := int64(0); off+piece <= size; off += piece {
		buf := make([]byte, piece)
		switch (off / piece) % 5 {
		case 0, 3: // text: compresses well
			t := buf[:0]
			for len(t) < piece {
				t = fmt.Appendf(t, "line %d of a compressible file at offset %d\n", len(t), off)
			}
			copy(buf, t)
		case 1: // noise: stays uncompressed
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
		case 2: // explicit zeros: qemu-img skips them
		case 4: // hole
			continue
		}
		if _, b.err = f.WriteAt(buf, off); b.err != nil {
			return
		}
	}
	// The last bytes, so a partial last cluster carries data.
	if _, b.err = f.WriteAt([]byte("the end of the disk\n"), size-20); b.err != nil {
		return
	}
	b.err = f.Close()
}

// oracle records qemu's view of file.
func (b *qcow2Builder) oracle(file string) {
	if b.err != nil {
		return
	}
	b.img("convert", "-O", "raw", file, file+".raw")
	for _, o := range []struct{ ext, cmd string }{{".map.json", "map"}, {".info.json", "info"}} {
		if b.err != nil {
			return
		}
		args := []string{o.cmd, "--output=json", file}
		if o.cmd == "info" {
			args = []string{"info", "--backing-chain", "--output=json", file}
		}
		out, err := RunIn(b.dir, nil, "qemu-img", args...)
		if err != nil {
			b.err = err
			return
		}
		b.err = os.WriteFile(filepath.Join(b.dir, file+o.ext), []byte(out), 0o644)
	}
}

// buildQcow2Lower makes base.qcow2 and sub/mid.qcow2 (backing
// "../base.qcow2", relative with a parent step).
func buildQcow2Lower(dir string) error {
	b := &qcow2Builder{dir: dir}
	if b.err = os.Mkdir(filepath.Join(dir, "sub"), 0o755); b.err != nil {
		return b.err
	}
	b.create("base.qcow2", "16M", "")
	b.io("base.qcow2", "write -P 0xa1 0 3M", "write -P 0xa2 6M 1M", "write -P 0xa3 12M 4M")
	b.create("sub/mid.qcow2", "16M", "", "-b", "../base.qcow2", "-F", "qcow2")
	b.io("sub/mid.qcow2", "write -P 0xb1 1M 1M", "write -z 6M 512k", "write -P 0xb2 9M 100k", "discard 12M 1M")
	return b.err
}

// qcow2Variants lists the recipes; lower is the qcow2-lower directory.
func qcow2Variants(lower string) []qcow2Variant {
	// Sizes that are not a multiple of the cluster size, so the last
	// cluster is partial.
	const odd = "16778752" // 16 MiB + 3 sectors
	return []qcow2Variant{
		{name: "v2", path: "v2.qcow2", build: func(b *qcow2Builder) {
			b.create("v2.qcow2", odd, "compat=0.10")
			b.io("v2.qcow2", "write -P 0x11 0 100k", "write -P 0x12 1048577 3000",
				"write -z 0 4k", "write -z 8M 1M", "write -P 0x13 16777216 1536")
			b.img("snapshot", "-c", "before", "v2.qcow2")
			b.io("v2.qcow2", "write -P 0x14 64k 64k", "discard 1M 64k")
		}},
		{name: "v3", path: "v3.qcow2", build: func(b *qcow2Builder) {
			b.create("v3.qcow2", odd, "")
			b.io("v3.qcow2", "write -P 0x21 0 100k", "write -P 0x22 1048577 3000",
				"write -z 64k 64k", "write -z 5M 1M", "write -P 0x23 7M 2M", "discard 8M 64k",
				"write -z 8519680 64k", "write -P 0x24 16777216 1536")
		}},
		{name: "v3-512", path: "c512.qcow2", build: func(b *qcow2Builder) {
			// 512-byte clusters: one L1 entry maps 32 KiB, so 320 MiB
			// needs 10240 entries, more than one cached L1 chunk.
			b.create("c512.qcow2", "320M", "cluster_size=512")
			b.io("c512.qcow2", "write -P 0x31 0 100k", "write -P 0x32 1000 3000", "write -z 1M 64k",
				"write -P 0x33 260M 1M", "write -z 272630784 1k", "write -P 0x34 335540224 4k")
		}},
		{name: "v3-2M", path: "c2m.qcow2", build: func(b *qcow2Builder) {
			b.create("c2m.qcow2", "67109376", "cluster_size=2M")
			b.io("c2m.qcow2", "write -P 0x41 3145828 1000", "write -P 0x42 10M 5M",
				"write -z 20M 4M", "write -z 11M 1M", "write -P 0x43 64M 512")
		}},
		{name: "zlib", path: "zlib.qcow2", build: func(b *qcow2Builder) {
			b.source("src16.raw", 16<<20)
			b.img("convert", "-c", "-O", "qcow2", "src16.raw", "zlib.qcow2")
		}},
		{name: "zstd", path: "zstd.qcow2", build: func(b *qcow2Builder) {
			b.source("src16.raw", 16<<20)
			b.img("convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", "src16.raw", "zstd.qcow2")
		}},
		{name: "zlib-512", path: "zlib512.qcow2", build: func(b *qcow2Builder) {
			b.source("src4.raw", 4<<20)
			b.img("convert", "-c", "-O", "qcow2", "-o", "cluster_size=512", "src4.raw", "zlib512.qcow2")
		}},
		{name: "zstd-2M", path: "zstd2m.qcow2", build: func(b *qcow2Builder) {
			b.source("src16.raw", 16<<20)
			b.img("convert", "-c", "-O", "qcow2", "-o", "cluster_size=2M,compression_type=zstd", "src16.raw", "zstd2m.qcow2")
			// Rewrite part of a compressed cluster: qemu decompresses it
			// and stores it uncompressed.
			b.io("zstd2m.qcow2", "write -P 0x51 1M 4k")
		}},
		{name: "extl2", path: "extl2.qcow2", depth: 1, build: func(b *qcow2Builder) {
			b.create("extl2-base.qcow2", "8M", "")
			b.io("extl2-base.qcow2", "write -P 0x61 0 8M")
			b.create("extl2.qcow2", "8M", "extended_l2=on", "-b", "extl2-base.qcow2", "-F", "qcow2")
			b.io("extl2.qcow2", "write -P 0x62 8k 4k", "write -P 0x63 94k 2k", "write -z 130k 4k",
				"write -z 1M 64k", "write -P 0x64 2M 200k", "discard 2162688 64k", "write -P 0x65 8387584 1k")
		}},
		{name: "extl2-solo", path: "extl2solo.qcow2", build: func(b *qcow2Builder) {
			// 16 KiB clusters: the smallest extended L2 allows, 512-byte
			// subclusters.
			b.create("extl2solo.qcow2", "4M", "extended_l2=on,cluster_size=16k")
			b.io("extl2solo.qcow2", "write -P 0x66 0 1k", "write -P 0x67 5k 512", "write -z 16k 16k",
				"write -P 0x68 40k 3k", "write -z 41k 512", "write -P 0x69 1M 100k")
		}},
		{name: "chain3", path: "top.qcow2", depth: 2, build: func(b *qcow2Builder) {
			// Absolute backing name to a relative-named chain below.
			b.create("top.qcow2", "16M", "", "-b", filepath.Join(lower, "sub/mid.qcow2"), "-F", "qcow2")
			b.io("top.qcow2", "write -P 0xc1 2097664 4k", "write -z 0 64k", "write -P 0xc2 6553600 512k",
				"write -z 13M 64k", "write -P 0xc3 15M 1048064")
		}},
		{name: "chain-raw", path: "over-raw.qcow2", depth: 1, rawLayers: []int{1}, build: func(b *qcow2Builder) {
			b.source("src8.raw", 8<<20)
			b.create("over-raw.qcow2", "8M", "", "-b", "src8.raw", "-F", "raw")
			b.io("over-raw.qcow2", "write -P 0xd1 100k 100k", "write -z 256k 64k", "write -P 0xd2 1051648 1k")
		}},
		{name: "backing-smaller", path: "ov-big.qcow2", depth: 1, build: func(b *qcow2Builder) {
			b.create("small-base.qcow2", "4M", "")
			b.io("small-base.qcow2", "write -P 0xe1 0 1M", "write -P 0xe2 3M 1M")
			b.create("ov-big.qcow2", "16M", "", "-b", "small-base.qcow2", "-F", "qcow2")
			b.io("ov-big.qcow2", "write -P 0xe3 512k 64k", "write -P 0xe4 5M 64k")
		}},
		{name: "backing-larger", path: "ov-small.qcow2", depth: 1, build: func(b *qcow2Builder) {
			b.create("big-base.qcow2", "16M", "")
			b.io("big-base.qcow2", "write -P 0xe5 0 16M")
			b.create("ov-small.qcow2", "6M", "", "-b", "big-base.qcow2", "-F", "qcow2")
			b.io("ov-small.qcow2", "write -P 0xe6 1M 64k")
		}},
		{name: "datafile-raw", path: "df-raw.qcow2", build: func(b *qcow2Builder) {
			b.create("df-raw.qcow2", odd, "data_file=df-raw.data,data_file_raw=on")
			b.io("df-raw.qcow2", "write -P 0xf1 0 100k", "write -z 64k 64k", "write -P 0xf2 5M 3M", "write -P 0xf3 16777216 1536")
		}},
		{name: "datafile", path: "df.qcow2", build: func(b *qcow2Builder) {
			b.create("df.qcow2", odd, "data_file=df.data")
			b.io("df.qcow2", "write -P 0xf4 2M 100k", "write -z 2M 64k", "write -P 0xf5 1M 64k", "write -P 0xf6 16777216 1536")
		}},
		{name: "snapshots", path: "snap.qcow2", build: func(b *qcow2Builder) {
			b.create("snap.qcow2", "8M", "")
			b.io("snap.qcow2", "write -P 0x71 0 1M")
			b.img("snapshot", "-c", "first", "snap.qcow2")
			b.io("snap.qcow2", "write -P 0x72 512k 1M")
			b.img("snapshot", "-c", "second snapshot", "snap.qcow2")
			b.io("snap.qcow2", "write -P 0x73 0 64k", "discard 1M 64k")
		}},
		{name: "bitmaps", path: "bitmaps.qcow2", build: func(b *qcow2Builder) {
			b.create("bitmaps.qcow2", "8M", "")
			b.img("bitmap", "--add", "bitmaps.qcow2", "daily")
			b.img("bitmap", "--add", "-g", "128k", "bitmaps.qcow2", "weekly-backup")
			b.io("bitmaps.qcow2", "write -P 0x81 0 1M")
		}},
		{name: "v2-backing-zero", path: "v2-over.qcow2", depth: 1, build: func(b *qcow2Builder) {
			b.create("v2-base.qcow2", "4M", "compat=0.10")
			b.io("v2-base.qcow2", "write -P 0x91 0 4M")
			b.create("v2-over.qcow2", "4M", "compat=0.10", "-b", "v2-base.qcow2", "-F", "qcow2")
			b.io("v2-over.qcow2", "write -z 64k 128k", "write -P 0x92 1M 64k")
		}},
		{name: "prealloc-metadata", path: "prealloc.qcow2", build: func(b *qcow2Builder) {
			b.create("prealloc.qcow2", "4M", "preallocation=metadata")
			b.io("prealloc.qcow2", "write -P 0xa5 100k 100k")
		}},
	}
}

func buildQcow2Variants(dir, lower string) error {
	for _, v := range qcow2Variants(lower) {
		b := &qcow2Builder{dir: dir}
		v.build(b)
		b.oracle(v.path)
		if b.err != nil {
			return fmt.Errorf("qcow2 fixture %s: %w", v.name, b.err)
		}
	}
	// The raw sources were only inputs.
	for _, s := range []string{"src16.raw", "src4.raw"} {
		os.Remove(filepath.Join(dir, s))
	}
	return nil
}

// QemuImageInfo is the part of `qemu-img info --output=json` the tests
// compare.
type QemuImageInfo struct {
	Filename            string `json:"filename"`
	VirtualSize         int64  `json:"virtual-size"`
	ClusterSize         int64  `json:"cluster-size"`
	Format              string `json:"format"`
	ActualSize          int64  `json:"actual-size"`
	DirtyFlag           bool   `json:"dirty-flag"`
	BackingFilename     string `json:"backing-filename"`
	FullBackingFilename string `json:"full-backing-filename"`
	BackingFormat       string `json:"backing-filename-format"`
	Snapshots           []struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		VMStateSize int64  `json:"vm-state-size"`
		DateSec     int64  `json:"date-sec"`
		DateNsec    int64  `json:"date-nsec"`
		VMClockSec  int64  `json:"vm-clock-sec"`
		VMClockNsec int64  `json:"vm-clock-nsec"`
	} `json:"snapshots"`
	FormatSpecific struct {
		Data struct {
			Compat          string `json:"compat"`
			CompressionType string `json:"compression-type"`
			Corrupt         bool   `json:"corrupt"`
			ExtendedL2      bool   `json:"extended-l2"`
			DataFile        string `json:"data-file"`
			DataFileRaw     bool   `json:"data-file-raw"`
			Bitmaps         []struct {
				Name string `json:"name"`
			} `json:"bitmaps"`
		} `json:"data"`
	} `json:"format-specific"`
}

// ReadQemuInfo reads an IMAGE.info.json file: the chain, top first.
func ReadQemuInfo(path string) ([]QemuImageInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var chain []QemuImageInfo
	if err := json.Unmarshal(b, &chain); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return chain, nil
}

// QemuMapExtent is one entry of `qemu-img map --output=json`.
type QemuMapExtent struct {
	Start   int64 `json:"start"`
	Length  int64 `json:"length"`
	Depth   int   `json:"depth"`
	Present bool  `json:"present"`
	Zero    bool  `json:"zero"`
	Data    bool  `json:"data"`
}

// ReadQemuMapJSON reads an IMAGE.map.json file.
func ReadQemuMapJSON(path string) ([]QemuMapExtent, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m []QemuMapExtent
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Qcow2BenchSize is the virtual size of the benchmark image.
const Qcow2BenchSize = 2 << 30

// Qcow2BenchImage returns a 2 GiB qcow2 image with 64 KiB clusters, half
// allocated: 1 MiB of incompressible data every 2 MiB, the rest
// unallocated, made by qemu-img convert from a sparse raw file (so its data
// clusters lie in guest order in the file, as after a fresh convert).
func Qcow2BenchImage(t testing.TB) string {
	t.Helper()
	RequireTools(t, "qemu-img")
	dir := Get(t, "qcow2-bench", "v1", func(dir string) error {
		src := filepath.Join(dir, "src.raw")
		f, err := os.Create(src)
		if err != nil {
			return err
		}
		defer os.Remove(src)
		defer f.Close()
		if err := f.Truncate(Qcow2BenchSize); err != nil {
			return err
		}
		rng := rand.New(rand.NewPCG(3, 4))
		chunk := make([]byte, 1<<20)
		for i := range chunk {
			chunk[i] = byte(rng.Uint32())
		}
		for off := int64(0); off < Qcow2BenchSize; off += 2 << 20 {
			copy(chunk, fmt.Sprintf("chunk at %d", off)) // no two chunks alike
			if _, err := f.WriteAt(chunk, off); err != nil {
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		_, err = Run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=64k", src, filepath.Join(dir, "bench.qcow2"))
		return err
	})
	return filepath.Join(dir, "bench.qcow2")
}
