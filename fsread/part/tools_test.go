package part

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/testimages"
)

// Tables made by sfdisk and sgdisk, checked against `sfdisk -J` (libfdisk,
// an independent reader) on the same image.

type sfdiskDump struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// oracle is what both readers report for a partition.
type oracle struct {
	N           int
	Start, Size int64 // bytes
	Type        string
	UUID, Name  string
	Boot        bool
}

var nodeNumber = regexp.MustCompile(`(\d+)$`)

func sfdiskOracle(t *testing.T, dev string) (string, []oracle) {
	t.Helper()
	var d sfdiskDump
	if err := json.Unmarshal([]byte(testimages.MustRun(t, "sfdisk", "-J", dev)), &d); err != nil {
		t.Fatal(err)
	}
	pt := d.PartitionTable
	var out []oracle
	for _, p := range pt.Partitions {
		n, _ := strconv.Atoi(nodeNumber.FindString(strings.TrimPrefix(p.Node, dev)))
		typ := strings.ToLower(p.Type)
		if pt.Label == "dos" {
			v, _ := strconv.ParseUint(p.Type, 16, 8)
			typ = fmt.Sprintf("0x%02x", v)
		}
		ss := int64(pt.SectorSize)
		out = append(out, oracle{n, p.Start * ss, p.Size * ss, typ, strings.ToLower(p.UUID), p.Name, p.Bootable})
	}
	return pt.Label, out
}

func ours(t *testing.T, dev string, opts Options) (*Table, []oracle) {
	t.Helper()
	f, err := vdisk.OpenOSFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := Read(f, f.Size(), opts)
	if err != nil {
		t.Fatalf("Read %s: %v", dev, err)
	}
	var out []oracle
	for _, p := range tab.Partitions {
		uuid := p.UUID
		boot := p.Bootable
		if tab.Scheme == "dos" {
			uuid = "" // sfdisk -J does not print the MBR PARTUUID
		} else {
			boot = false // sfdisk -J shows GPT attributes as text; checked apart
		}
		out = append(out, oracle{p.Number, p.Start, p.Size, p.Type, uuid, p.Name, boot})
	}
	return tab, out
}

func TestAgainstSfdisk(t *testing.T) {
	testimages.RequireTools(t, "sfdisk", "sgdisk")
	dir := t.TempDir()
	for _, c := range []struct {
		name   string
		make   func(img string) error
		damage func(img string) error
	}{
		{name: "dos with logicals and an empty slot", make: sfdiskScript(`label: dos
label-id: 0x0badcafe
IMG2 : start=2048, size=8192, type=83, bootable
IMG3 : start=16384, size=90000, type=f
IMG4 : start=110000, size=4096, type=82
IMG5 : start=18432, size=8192, type=83
IMG6 : start=28672, size=8192, type=8e
IMG7 : start=38912, size=2048, type=7
IMG8 : start=43008, size=40000, type=b
`)},
		{name: "dos primaries only", make: sfdiskScript("label: dos\n,8M,L\n,8M,S\n,,L\n")},
		{name: "gpt with gaps and names", make: sgdisk("-n", "1:2048:+8M", "-t", "1:ef00", "-c", "1:EFI system partition",
			"-n", "3:0:+16M", "-t", "3:8e00", "-n", "128:0:+1M", "-c", "128:last entry ☃", "-n", "5:0:0", "-c", "5:home")},
		{name: "gpt primary header damaged", make: sgdisk("-n", "1:2048:+8M", "-n", "2:0:0"), damage: zeroAt(512, 512)},
		{name: "gpt primary entries damaged", make: sgdisk("-n", "1:2048:+8M", "-n", "2:0:0"), damage: zeroAt(1024, 128)},
		{name: "gpt hybrid MBR", make: func(img string) error {
			if err := sgdisk("-n", "1:2048:+8M", "-t", "1:ef00", "-n", "3:0:+8M", "-t", "3:0700", "-n", "5:0:+4M")(img); err != nil {
				return err
			}
			_, err := testimages.Run("sgdisk", "-h", "1:3", img)
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".img")
			if err := testimages.Truncate(img, 64<<20); err != nil {
				t.Fatal(err)
			}
			if err := c.make(img); err != nil {
				t.Fatal(err)
			}
			label, want := sfdiskOracle(t, img) // before any damage
			if c.damage != nil {
				if err := c.damage(img); err != nil {
					t.Fatal(err)
				}
			}
			tab, got := ours(t, img, Options{Name: c.name})
			if tab.Scheme != label {
				t.Errorf("scheme %s, sfdisk says %s", tab.Scheme, label)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("partitions (-sfdisk +ours):\n%s", d)
			}
			if c.damage != nil && len(tab.Warnings) == 0 {
				t.Errorf("damaged table read without a warning")
			}
			if c.damage == nil && len(tab.Warnings) != 0 {
				t.Errorf("warnings: %q", tab.Warnings)
			}
			if strings.Contains(c.name, "hybrid") && !tab.Hybrid {
				t.Errorf("hybrid MBR not reported")
			}
		})
	}
}

// TestGPT4KSectors makes a GPT with 4 KiB logical sectors through a loop
// device with that sector size, and reads the image file, where the sector
// size must be detected.
func TestGPT4KSectors(t *testing.T) {
	testimages.RequireTools(t, "sgdisk", "sfdisk", "losetup")
	testimages.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "4k.img")
	if err := testimages.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, err := testimages.Run("losetup", "--find", "--show", "--sector-size", "4096", img)
	if err != nil {
		testimages.Missing(t, "loop device with 4096-byte sectors: %v", err)
	}
	dev := strings.TrimSpace(out)
	defer testimages.Run("losetup", "-d", dev)
	testimages.MustRun(t, "sgdisk", "-n", "1:0:+8M", "-t", "1:ef00", "-c", "1:EFI", "-n", "3:0:+16M", "-n", "2:0:0", "-t", "2:8e00", dev)
	_, want := sfdiskOracle(t, dev)
	tab, got := ours(t, img, Options{})
	if tab.SectorSize != 4096 {
		t.Errorf("sector size %d, want 4096", tab.SectorSize)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("partitions (-sfdisk +ours):\n%s", d)
	}
	// And with the primary header gone, from the backup at the last LBA.
	if err := zeroAt(4096, 4096)(img); err != nil {
		t.Fatal(err)
	}
	tab, got = ours(t, img, Options{})
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("from backup: partitions (-sfdisk +ours):\n%s", d)
	}
	wantWarning(t, tab, "using the backup")
}

func sfdiskScript(script string) func(string) error {
	return func(img string) error {
		return runStdin(strings.ReplaceAll(script, "IMG", img), "sfdisk", "-q", "--no-reread", "--no-tell-kernel", img)
	}
}

func sgdisk(args ...string) func(string) error {
	return func(img string) error {
		_, err := testimages.Run("sgdisk", append(args, img)...)
		return err
	}
}

func zeroAt(off, n int64) func(string) error {
	return func(img string) error {
		f, err := os.OpenFile(img, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteAt(make([]byte, n), off)
		return err
	}
}
