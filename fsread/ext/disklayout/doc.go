// Package disklayout holds the exact on-disk structures of ext2/3/4 as Go
// structs (field names follow the kernel's Documentation/filesystems/ext4 and
// e2fsprogs' ext2_fs.h, with the Lo/Hi halves kept apart) and decoders from
// little-endian bytes, plus the feature flags and the crc32c helpers that
// metadata_csum uses.
//
// It does not walk anything: the logic that follows pointers between these
// structures (and bounds it) lives in package ext. Decoders only check that
// the slice is long enough and never panic; whether the values make sense
// is for the caller to judge against the volume's size.
package disklayout
