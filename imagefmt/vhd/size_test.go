package vhd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/testimages"
)

// TestSizeRules: which of CHS geometry and Current Size gives the disk size
// depends on the creator application; each crafted fixed disk must have the
// size qemu-img gives it.
func TestSizeRules(t *testing.T) {
	testimages.RequireTools(t, "qemu-img")
	tmp := t.TempDir()
	const current = 10<<20 + 3*512
	cases := []struct {
		creator string
		chs     [3]int // cylinders, heads, sectors per track
		want    int64
	}{
		{"vpc ", [3]int{300, 4, 17}, 300 * 4 * 17 * 512},
		{"qemu", [3]int{300, 4, 17}, 300 * 4 * 17 * 512},
		{"win ", [3]int{300, 4, 17}, current},
		{"d2v ", [3]int{300, 4, 17}, current},
		{"qem2", [3]int{300, 4, 17}, current},
		{"CTXS", [3]int{300, 4, 17}, current},
		{"tap\x00", [3]int{300, 4, 17}, current},
		{"vs  ", [3]int{65535, 16, 255}, current}, // maximal geometry: the size is in the footer
	}
	for _, c := range cases {
		name := strings.TrimRight(strings.ReplaceAll(c.creator, "\x00", "0"), " ")
		t.Run(name, func(t *testing.T) {
			d := &testDisk{size: current, diskType: TypeFixed, creator: c.creator}
			b := d.build()
			ft := DecodeFooter(b[len(b)-FooterSize:])
			ft.Cylinders, ft.Heads, ft.SectorsPerTrack = uint16(c.chs[0]), uint8(c.chs[1]), uint8(c.chs[2])
			ft.Encode(b[len(b)-FooterSize:])
			path := filepath.Join(tmp, name+".vhd")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := testimages.Run("qemu-img", "info", "-f", "vpc", "--output=json", path)
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				VirtualSize int64 `json:"virtual-size"`
			}
			if err := json.Unmarshal([]byte(out), &info); err != nil {
				t.Fatal(err)
			}
			img, err := Open(vdisk.BytesFile(path, b), vdisk.OpenOptions{Name: path})
			if err != nil {
				t.Fatal(err)
			}
			if img.Size() != info.VirtualSize || img.Size() != c.want {
				t.Errorf("size %d, qemu-img %d, want %d", img.Size(), info.VirtualSize, c.want)
			}
		})
	}
}
