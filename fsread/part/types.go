package part

import "fmt"

func mbrType(t uint8) string { return fmt.Sprintf("0x%02x", t) }

// mbrTypeName names the common MBR partition types (sfdisk's names).
func mbrTypeName(t uint8) string {
	switch t {
	case 0x01:
		return "FAT12"
	case 0x04, 0x06, 0x0e:
		return "FAT16"
	case 0x05:
		return "Extended"
	case 0x07:
		return "HPFS/NTFS/exFAT"
	case 0x0b, 0x0c:
		return "W95 FAT32"
	case 0x0f:
		return "W95 Ext'd (LBA)"
	case 0x27:
		return "Hidden NTFS WinRE"
	case 0x82:
		return "Linux swap / Solaris"
	case 0x83:
		return "Linux"
	case 0x85:
		return "Linux extended"
	case 0x8e:
		return "Linux LVM"
	case 0xa5:
		return "FreeBSD"
	case 0xee:
		return "GPT"
	case 0xef:
		return "EFI (FAT-12/16/32)"
	case 0xfd:
		return "Linux raid autodetect"
	}
	return ""
}

// gptTypes names common GPT partition type GUIDs (the names sgdisk and
// fdisk use; Discoverable Partitions Specification for the Linux ones).
var gptTypes = map[string]string{
	"c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System",
	"21686148-6449-6e6f-744e-656564454649": "BIOS boot",
	"0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
	"0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
	"e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
	"a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID",
	"933ac7e1-2eb4-4f13-b844-0e14e2aef915": "Linux home",
	"3b8f8425-20e0-4f3b-907f-1a25a76f98e8": "Linux server data",
	"4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
	"44479540-f297-41b2-9af7-d131d5f0458a": "Linux root (x86)",
	"b921b045-1df0-41c3-af44-4c6f280d3fae": "Linux root (ARM-64)",
	"bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
	"ca7d7ccb-63ed-4c53-861c-1742536059cc": "Linux LUKS",
	"8da63339-0007-60c0-c436-083ac8230908": "Linux reserved",
	"e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
	"ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
	"de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery environment",
	"5808c8aa-7e8f-42e0-85d2-e1e90434cfb3": "Windows LDM metadata",
	"af9b60a0-1431-4f62-bc68-3311714a69ad": "Windows LDM data",
	"6a898cc3-1dd2-11b2-99a6-080020736631": "Solaris /usr & Apple ZFS",
	"516e7cb4-6ecf-11d6-8ff8-00022d09712b": "FreeBSD UFS",
	"48465300-0000-11aa-aa11-00306543ecac": "Apple HFS/HFS+",
}

func gptTypeName(guid string) string { return gptTypes[guid] }
