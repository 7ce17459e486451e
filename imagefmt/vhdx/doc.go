// Package vhdx reads Hyper-V VHDX images as [MS-VHDX] describes them: the
// two headers (the current one picked by sequence number, each checked with
// CRC-32C), the region table, the metadata region (block size, virtual
// size, 512 or 4096 byte logical sectors, parent locator) and the block
// allocation table with its payload and sector bitmap entries, for fixed,
// dynamic and differencing disks with 1 MiB to 256 MiB blocks.
//
// An image whose log still holds entries (it was not closed cleanly) is
// replayed into an in-memory overlay; the file is never written.
//
// It is read-only and is not a VHD reader (see package vhd).
package vhdx
