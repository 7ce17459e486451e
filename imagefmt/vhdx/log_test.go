package vhdx

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// TestLogReplay crafts an image left with a log to replay: one entry maps a
// new block in the BAT and fills two of its pages, the next zeroes part of
// block 0 and rewrites a page of it. The oracle is qemu-img after it
// replays the log into a copy (`qemu-img check -r all` opens it read-write);
// our image must read the same without writing the file.
func TestLogReplay(t *testing.T) {
	testimages.RequireTools(t, "qemu-img")
	d := &testDisk{size: 8 * MiB, blockSize: MiB, sector: 512, diskID: GUID{3}, dataWrite: GUID{4},
		sectors: map[int64][]byte{}}
	for s := int64(0); s < 2048; s++ { // block 0 full of data
		d.sectors[s] = bytes.Repeat([]byte{byte(s), byte(s >> 8)}, 256)
	}
	d.sectors[5*2048] = bytes.Repeat([]byte{0x55}, 512)
	base := d.build()
	spare := int64(len(base)) // a block's worth of space the BAT does not use yet
	base = append(base, bytes.Repeat([]byte{0xab}, MiB)...)

	const batOff = 3 * MiB
	batPage := bytes.Clone(base[batOff : batOff+LogSectorSize])
	cr := int64(SectorsPerChunk * 512 / MiB)
	idx := 2 + 2/cr
	copy(batPage[8*idx:], le64(MakeBATEntry(PayloadFullyPresent, spare)))
	p1 := bytes.Repeat([]byte("log page one "), 400)[:LogSectorSize]
	p2 := bytes.Repeat([]byte{0x77}, LogSectorSize)
	p3 := bytes.Repeat([]byte("rewritten "), 500)[:LogSectorSize]
	_, block0 := BATEntry(le64u(base[batOff:]))

	d.logGUID = GUID{0x10, 0x20}
	d.log = buildLog(d.logGUID, 7, int64(len(base)), []testLogEntry{
		{pages: map[int64][]byte{batOff: batPage, spare: p1, spare + 12*KiB: p2}},
		{zeros: [][2]int64{{block0 + 64*KiB, 128 * KiB}}, pages: map[int64][]byte{block0 + 128*KiB: p3}},
	})
	img := d.build()
	img = append(img, bytes.Repeat([]byte{0xab}, MiB)...)

	tmp := t.TempDir()
	path := filepath.Join(tmp, "dirty.vhdx")
	writeFile(t, path, img)
	replayed := filepath.Join(tmp, "replayed.vhdx")
	writeFile(t, replayed, img)
	if _, err := testimages.Run("qemu-img", "check", "-r", "all", "-f", "vhdx", replayed); err != nil {
		t.Logf("qemu-img check: %v", err) // it reports the replay; the exit status is not the point
	}
	if err := testimages.VDiskOracle(replayed, "vhdx"); err != nil {
		t.Fatal(err)
	}
	// qemu did replay: the logged writes are in its view.
	oracle, _ := os.ReadFile(replayed + ".raw")
	if !bytes.Equal(oracle[2*MiB:2*MiB+LogSectorSize], p1) || !bytes.Equal(oracle[64*KiB:128*KiB], make([]byte, 64*KiB)) ||
		!bytes.Equal(oracle[128*KiB:132*KiB], p3) {
		t.Fatalf("qemu-img did not replay the log as crafted")
	}
	got := mustOpen(t, path)
	testimages.CheckVDiskRead(t, got, replayed+".raw")
	if w := got.Info().Warnings; len(w) != 1 {
		t.Errorf("warnings %q", w)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, img) {
		t.Fatalf("the image file changed")
	}
}

func le64(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

func le64u(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}
