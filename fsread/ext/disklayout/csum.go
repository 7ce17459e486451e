package disklayout

import (
	"encoding/binary"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Crc32c is the kernel's crc32c_le(seed, p): the Castagnoli CRC without the
// final inversion that hash/crc32 applies. ext4 and jbd2 chain checksums by
// feeding one result in as the next seed (ext4 metadata_csum, "Checksums" in
// Documentation/filesystems/ext4/overview.rst), so the raw form is needed.
func Crc32c(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// Crc32cU32 chains a little-endian 32-bit value (inode number, group
// number, generation) into a checksum, as ext4 does for per-object seeds.
func Crc32cU32(seed, v uint32) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return Crc32c(seed, b[:])
}

// Crc32cU64 chains a little-endian 64-bit value (xattr block number).
func Crc32cU64(seed uint32, v uint64) uint32 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return Crc32c(seed, b[:])
}

var zero4 [4]byte

// Crc32cZeros chains n zero bytes (n <= 4): the stand-in for a checksum
// field while it is being computed.
func Crc32cZeros(seed uint32, n int) uint32 { return Crc32c(seed, zero4[:n]) }

// Crc16 is the CRC-16 (poly 0x8005, reflected: 0xA001) of the older
// gdt_csum ("uninit_bg") group descriptor checksum.
func Crc16(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc ^= uint16(b)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}
