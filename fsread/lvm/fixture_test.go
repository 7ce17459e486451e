package lvm

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// The LVM fixture: three PV images made by pvcreate/vgcreate/lvcreate on
// loop devices (activation off: device-mapper is not available, and LVM
// writes no LV data then), with a raid1 LV added through vgcfgbackup and
// vgcfgrestore, and enough metadata commits that the text of d1 wraps
// around its circular buffer. The PVs are filled with random bytes first, so
// every extent is distinct. The oracle is LVM's own report (vgs, pvs, lvs
// --segments, JSON) taken on the same devices.

const (
	lvmFixtureName    = "lvm-unit"
	lvmFixtureVersion = "v1"
	fixtureVG         = "vm-unit"
)

var fixturePVs = []string{"d1", "d2", "d3"}

func lvmFixture(t *testing.T) string {
	t.Helper()
	testimages.RequireTools(t, "lvm", "losetup")
	testimages.RequireRoot(t)
	return testimages.Get(t, lvmFixtureName, lvmFixtureVersion, buildLVMFixture)
}

func buildLVMFixture(dir string) error {
	rng := rand.New(rand.NewPCG(7, 7))
	var devs []string
	for _, name := range fixturePVs {
		b := make([]byte, 24<<20)
		for i := 0; i < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
		}
		img := filepath.Join(dir, name+".img")
		if err := os.WriteFile(img, b, 0o644); err != nil {
			return err
		}
		out, err := testimages.Run("losetup", "--find", "--show", img)
		if err != nil {
			return err
		}
		dev := strings.TrimSpace(out)
		defer testimages.Run("losetup", "-d", dev)
		devs = append(devs, dev)
	}
	// No activation (no device-mapper here), no udev, no devices file, no
	// backups in /etc/lvm, and only our loop devices visible.
	conf := "global{activation=0} devices{obtain_device_list_from_udev=0 use_devicesfile=0} backup{backup=0 archive=0}"
	lvm := func(cmd string, args ...string) (string, error) {
		return testimages.RunIn("", []string{"LVM_SUPPRESS_FD_WARNINGS=1"}, "lvm",
			append([]string{cmd, "--config", conf, "--devices", strings.Join(devs, ",")}, args...)...)
	}
	steps := [][]string{
		{"pvcreate", "-ff", "-y", "--metadatasize", "32k", "--dataalignment", "64k", devs[0], devs[1]},
		{"pvcreate", "-ff", "-y", "--metadatasize", "32k", "--dataalignment", "64k", "--pvmetadatacopies", "2", devs[2]},
		{"vgcreate", "-s", "1M", fixtureVG, devs[0], devs[1], devs[2]},
		{"lvcreate", "-an", "-Zn", "-L", "4M", "-n", "root", fixtureVG, devs[0]},
		{"lvcreate", "-an", "-Zn", "-i", "2", "-I", "64k", "-L", "4M", "-n", "data", fixtureVG, devs[1], devs[2]},
		{"lvcreate", "-an", "-Zn", "-L", "2M", "-n", "seg-lv", fixtureVG, devs[0]},
		{"lvcreate", "-an", "-Zn", "-L", "1M", "-n", "filler", fixtureVG, devs[0]},
		{"lvextend", "-L", "+2M", fixtureVG + "/seg-lv", devs[2]},
		{"vgcfgbackup", "-f", filepath.Join(dir, "vg.txt"), fixtureVG},
	}
	for _, s := range steps {
		if _, err := lvm(s[0], s[1:]...); err != nil {
			return err
		}
	}
	// A raid1 LV (lvcreate refuses without device-mapper): images on the
	// last extents of d1 and d2, metadata sub-LVs next to them.
	text, err := os.ReadFile(filepath.Join(dir, "vg.txt"))
	if err != nil {
		return err
	}
	raid := `
r1 {
id = "r1r1r1-0000-0000-0000-0000-0000-000001"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
segment_count = 1
segment1 {
start_extent = 0
extent_count = 2
type = "raid1"
device_count = 2
region_size = 1024
raids = ["r1_rmeta_0", "r1_rimage_0", "r1_rmeta_1", "r1_rimage_1"]
}
}
` + fixtureLinear("r1_rimage_0", "000002", "pv0", 20, 2) + fixtureLinear("r1_rmeta_0", "000003", "pv0", 22, 1) +
		fixtureLinear("r1_rimage_1", "000004", "pv1", 19, 2) + fixtureLinear("r1_rmeta_1", "000005", "pv1", 21, 1)
	s := string(text)
	i := strings.Index(s, "logical_volumes {")
	if i < 0 {
		return fmt.Errorf("no logical_volumes in vgcfgbackup output")
	}
	i += len("logical_volumes {")
	if err := os.WriteFile(filepath.Join(dir, "vg-raid.txt"), []byte(s[:i]+raid+s[i:]), 0o644); err != nil {
		return err
	}
	if _, err := lvm("vgcfgrestore", "-f", filepath.Join(dir, "vg-raid.txt"), fixtureVG); err != nil {
		return err
	}
	// Commit metadata until d1's text wraps around its 32 KiB-ish buffer.
	for n := 0; ; n++ {
		wrapped, err := mdaWrapped(filepath.Join(dir, "d1.img"))
		if err != nil {
			return err
		}
		if wrapped {
			break
		}
		if n >= 200 {
			return fmt.Errorf("metadata of d1 did not wrap after %d commits", n)
		}
		op := "--addtag"
		if n%2 == 1 {
			op = "--deltag"
		}
		if _, err := lvm("vgchange", op, "wraptest", fixtureVG); err != nil {
			return err
		}
	}
	reports := map[string][]string{
		"vgs.json": {"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_uuid,vg_seqno,vg_extent_size"},
		"pvs.json": {"pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "pv_name,pv_uuid,pe_start,pv_pe_count"},
		"lvs.json": {"lvs", "-a", "--segments", "--reportformat", "json", "--units", "b", "--nosuffix",
			"-o", "lv_name,lv_attr,segtype,seg_start_pe,seg_size_pe,seg_pe_ranges,stripes,stripe_size"},
	}
	for file, args := range reports {
		out, err := lvm(args[0], args[1:]...)
		if err != nil {
			return err
		}
		for i, dev := range devs {
			out = regexp.MustCompile(regexp.QuoteMeta(dev)+`\b`).ReplaceAllString(out, fixturePVs[i])
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(out), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func fixtureLinear(name, id, pv string, pe, n int) string {
	return fmt.Sprintf(`
%s {
id = "%s-0000-0000-0000-0000-0000-000000"
status = ["READ", "WRITE"]
flags = []
segment_count = 1
segment1 {
start_extent = 0
extent_count = %d
type = "striped"
stripe_count = 1
stripes = ["%s", %d]
}
}
`, name, id, n, pv, pe)
}

// mdaWrapped reads the first metadata area header of a PV image straight
// from the bytes (label in sector 1, as pvcreate writes it) and says whether
// the committed text runs past the end of the area.
func mdaWrapped(img string) (bool, error) {
	f, err := os.Open(img)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b := make([]byte, 8192)
	if _, err := f.ReadAt(b, 0); err != nil {
		return false, err
	}
	l := b[512:]
	h := l[binary.LittleEndian.Uint32(l[20:]):]
	p := h[40:]
	for binary.LittleEndian.Uint64(p) != 0 { // data areas
		p = p[16:]
	}
	p = p[16:]
	mdaOff := int64(binary.LittleEndian.Uint64(p))
	mh := make([]byte, 512)
	if _, err := f.ReadAt(mh, mdaOff); err != nil {
		return false, err
	}
	size := binary.LittleEndian.Uint64(mh[32:])
	off := binary.LittleEndian.Uint64(mh[40:])
	n := binary.LittleEndian.Uint64(mh[48:])
	return off+n > size, nil
}

// Oracle reports.

type lvsReport struct {
	Report []struct {
		Seg []struct {
			LV       string `json:"lv_name"`
			Attr     string `json:"lv_attr"`
			Type     string `json:"segtype"`
			Start    int64  `json:"seg_start_pe,string"`
			Size     int64  `json:"seg_size_pe,string"`
			Ranges   string `json:"seg_pe_ranges"`
			Stripes  int    `json:"stripes,string"`
			StripeSz int64  `json:"stripe_size,string"`
		} `json:"seg"`
	} `json:"report"`
}

type vgsReport struct {
	Report []struct {
		VG []struct {
			Name       string `json:"vg_name"`
			UUID       string `json:"vg_uuid"`
			Seqno      uint64 `json:"vg_seqno,string"`
			ExtentSize int64  `json:"vg_extent_size,string"`
		} `json:"vg"`
	} `json:"report"`
}

type pvsReport struct {
	Report []struct {
		PV []struct {
			Name    string `json:"pv_name"`
			UUID    string `json:"pv_uuid"`
			PEStart int64  `json:"pe_start,string"`
			PECount uint64 `json:"pv_pe_count,string"`
		} `json:"pv"`
	} `json:"report"`
}

func readReport(t *testing.T, dir, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
