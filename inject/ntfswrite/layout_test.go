package ntfswrite

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// The byte offsets the writer uses agree with fsread/ntfs's on-disk
// structs (whose sizes its own test asserts): each field encoded through
// the struct is read back at the writer's offset.
func TestLayoutOffsets(t *testing.T) {
	enc := func(v any) []byte {
		var b bytes.Buffer
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	rh := enc(ntfs.RecordHeader{USAOfs: 0x1111, USACount: 0x2222, LSN: 0x3333, SequenceNumber: 0x4444, LinkCount: 0x5555,
		AttrsOffset: 0x6666, Flags: 0x7777, BytesInUse: 0x8888, BytesAllocated: 0x9999, BaseMFTRecord: 0xAAAA,
		NextAttrInst: 0xBBBB, MFTRecordNumber: 0xCCCC})
	for off, want := range map[int]uint64{recUSAOfs: 0x1111, recUSACount: 0x2222, recLSN: 0x3333, recSeq: 0x4444,
		recLinkCount: 0x5555, recAttrsOffset: 0x6666, recFlags: 0x7777, recBytesInUse: 0x8888, recBytesAlloc: 0x9999,
		recBase: 0xAAAA, recNextInstance: 0xBBBB, recNumber: 0xCCCC} {
		if got := uint64(le.Uint16(rh[off:])); got != want&0xFFFF {
			t.Errorf("record header offset %#x: %#x, want %#x", off, got, want)
		}
	}
	fn := enc(ntfs.FileNameHeader{ParentDirectory: 1, CreationTime: 2, LastDataChangeTime: 3, LastMFTChangeTime: 4,
		LastAccessTime: 5, AllocatedSize: 6, DataSize: 7, FileAttributes: 8, ReparseOrEA: 9, FileNameLength: 10, FileNameType: 11})
	for off, want := range map[int]uint64{fnParent: 1, fnCreation: 2, fnDataChange: 3, fnMFTChange: 4, fnAccess: 5,
		fnAllocSize: 6, fnDataSize: 7, fnAttributes: 8, fnReparse: 9} {
		if got := uint64(le.Uint16(fn[off:])); got != want {
			t.Errorf("$FILE_NAME offset %#x: %d, want %d", off, got, want)
		}
	}
	if fn[fnNameLen] != 10 || fn[fnNameType] != 11 || len(fn) != fnName {
		t.Errorf("$FILE_NAME name length/type/size: %d %d %d", fn[fnNameLen], fn[fnNameType], len(fn))
	}
	si := enc(ntfs.StandardInformation{CreationTime: 1, LastDataChangeTime: 2, LastMFTChangeTime: 3, LastAccessTime: 4, FileAttributes: 5})
	for off, want := range map[int]uint16{siCreation: 1, siDataChange: 2, siMFTChange: 3, siAccess: 4, siAttributes: 5} {
		if got := le.Uint16(si[off:]); got != want {
			t.Errorf("$STANDARD_INFORMATION offset %#x: %d, want %d", off, got, want)
		}
	}
	ir := enc(ntfs.IndexRoot{Type: 1, CollationRule: 2, IndexBlockSize: 3, ClustersPerIndexBlock: 4, EntriesOffset: 5, IndexLength: 6, AllocatedSize: 7, Flags: 8})
	h := ir[irHeaderSize:]
	if le.Uint32(h[ihEntriesOff:]) != 5 || le.Uint32(h[ihIndexLength:]) != 6 || le.Uint32(h[ihAllocSize:]) != 7 || h[ihFlags] != 8 || ir[12] != 4 {
		t.Errorf("index root/header offsets: % x", ir)
	}
	ib := enc(ntfs.IndexBlockHeader{IndexBlockVCN: 0x77})
	if le.Uint64(ib[indxVCN:]) != 0x77 || ntfs.IndexHeaderOffset != 0x18 || ntfs.IndexBlockHeaderSize != indxUSAOfs {
		t.Errorf("index block header: % x", ib)
	}
}
