package fsread

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Crafted superblocks of the types vmmount detects but has no tool for here
// (mkfs.xfs, mkfs.btrfs, cryptsetup, mdadm): the fields at the offsets their
// specifications give.
func TestProbeCrafted(t *testing.T) {
	uuid := []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	const uuidText = "12345678-9abc-def0-0123-456789abcdef"
	for _, c := range []struct {
		name  string
		size  int
		build func(b []byte)
		want  probe
	}{
		{"xfs", 1 << 20, func(b []byte) {
			copy(b, "XFSB") // xfs_sb: sb_uuid at 32, sb_fname[12] at 108
			copy(b[32:], uuid)
			copy(b[108:], "xfs-label")
		}, probe{typ: TypeXFS, label: "xfs-label", uuid: uuidText}},
		{"btrfs", 1 << 20, func(b []byte) {
			sb := b[0x10000:] // btrfs_super_block at 64 KiB: fsid at 0x20, magic at 0x40, label at 0x12b
			copy(sb[0x20:], uuid)
			copy(sb[0x40:], "_BHRfS_M")
			copy(sb[0x12b:], "btr")
		}, probe{typ: TypeBtrfs, label: "btr", uuid: uuidText}},
		{"luks2", 1 << 20, func(b []byte) {
			copy(b, "LUKS\xba\xbe\x00\x02")
			copy(b[24:], "secret")
			copy(b[168:], uuidText)
		}, probe{typ: TypeLUKS, version: "2", label: "secret", uuid: uuidText}},
		{"md 1.2", 1 << 20, func(b []byte) {
			binary.LittleEndian.PutUint32(b[4096:], 0xa92b4efc)
		}, probe{typ: TypeMDRaid, version: "1.2"}},
		{"md 0.90 at the end", 1 << 20, func(b []byte) {
			binary.LittleEndian.PutUint32(b[(1<<20)-65536:], 0xa92b4efc)
		}, probe{typ: TypeMDRaid, version: "0.90"}},
		{"swap v1", 1 << 20, func(b []byte) {
			copy(b[4096-10:], "SWAPSPACE2")
			copy(b[1024+12:], uuid)
			copy(b[1024+28:], "sw")
		}, probe{typ: TypeSwap, version: "1", label: "sw", uuid: uuidText}},
		{"exfat", 1 << 20, func(b []byte) {
			copy(b[3:], "EXFAT   ")
			binary.LittleEndian.PutUint32(b[0x64:], 0x1234abcd)
		}, probe{typ: TypeExFAT, uuid: "1234-ABCD"}},
		{"ext journal device", 1 << 20, func(b []byte) {
			binary.LittleEndian.PutUint16(b[1024+0x38:], 0xEF53)
			binary.LittleEndian.PutUint32(b[1024+0x60:], 0x8)
		}, probe{typ: TypeJBD}},
		{"tiny volume", 100, func([]byte) {}, probe{typ: TypeUnknown}},
		{"zeros", 1 << 20, func([]byte) {}, probe{typ: TypeUnknown}},
	} {
		b := make([]byte, c.size)
		c.build(b)
		got, err := probeVolume(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(probe{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}

// FuzzOpenSet opens a small disk of arbitrary bytes as a one-disk set:
// partition tables, LVM labels and metadata, probes. Every volume stays
// inside the disk and nothing panics.
func FuzzOpenSet(f *testing.F) {
	seed := make([]byte, 4<<10) // small seeds keep the fuzzer's minimizer fast
	copy(seed[1024+0x38:], []byte{0x53, 0xEF})
	f.Add(seed)
	fat := make([]byte, 4<<10)
	copy(fat, []byte{0xEB, 0x3C, 0x90, 'm', 'k', 'f', 's', '.', 'f', 'a', 't', 0x00, 0x02, 4, 4, 0, 2, 0, 2, 0, 1, 0xF8, 1, 0})
	fat[510], fat[511] = 0x55, 0xAA
	copy(fat[0x2B:], "LABEL      ")
	f.Add(fat)
	ntfs := make([]byte, 12<<10)
	copy(ntfs[3:], "NTFS    ")
	binary.LittleEndian.PutUint16(ntfs[0x0B:], 512)
	ntfs[0x0D] = 1
	binary.LittleEndian.PutUint64(ntfs[0x30:], 16)
	ntfs[0x40] = 0xF6 // 1 KiB records
	copy(ntfs[16*512+3*1024:], "FILE")
	f.Add(ntfs)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := OpenSet(context.Background(), []DiskSource{{Name: "vda", Image: bytes.NewReader(b)}})
		if err != nil {
			t.Fatal(err) // only a canceled context fails the set
		}
		for _, v := range s.Volumes() {
			if v.Kind != KindLV && (v.Offset < 0 || v.Size < 0 || v.Offset+v.Size > int64(len(b))) {
				t.Fatalf("%s: [%d, +%d) outside the disk", v.Path, v.Offset, v.Size)
			}
		}
	})
}
