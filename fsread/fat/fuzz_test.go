package fat

import (
	"bytes"
	"os"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// fuzzSeedSize trims fixture images to their first bytes: boot sector,
// FATs, root directory and the first clusters.
const fuzzSeedSize = 64 << 10

func addFixtureSeeds(f *testing.F) {
	for _, fx := range fatFixtures {
		dir, err := testimages.Cached("fsread-fat-"+fx.name, fx.version, fx.build)
		if err != nil {
			continue // tools missing: the synthetic seeds still run
		}
		b, err := os.ReadFile(dir + "/img")
		if err != nil {
			continue
		}
		f.Add(b[:min(len(b), fuzzSeedSize)])
	}
}

// FuzzFATOpen opens arbitrary bytes as a FAT volume and walks everything it
// lists: no panic, no hang, no unbounded allocation.
func FuzzFATOpen(f *testing.F) {
	p := populated().b
	f.Add(p[:tinyData+8*512])
	addFixtureSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := Open(bytes.NewReader(data), int64(len(data)), Options{Name: "fuzz"})
		if err != nil {
			return
		}
		walk(t, fs)

	})
}

// FuzzFATDir puts arbitrary bytes in the root directory and in a
// subdirectory's cluster of a valid volume and walks it.
func FuzzFATDir(f *testing.F) {
	p := populated().b
	f.Add(p[tinyRoot:tinyData], p[clusterOff(5):clusterOff(6)])
	f.Fuzz(func(t *testing.T, root, sub []byte) {
		tv := populated()
		copy(tv.b[tinyRoot:tinyData], root)
		copy(tv.b[clusterOff(5):clusterOff(6)], sub)
		fs, err := Open(bytes.NewReader(tv.b), int64(len(tv.b)), Options{Name: "fuzz"})
		if err != nil {
			return
		}
		walk(t, fs)
	})
}
