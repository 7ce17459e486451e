// Package qcow2 reads and writes qcow2 images, versions 2 and 3, as
// specified in qemu's docs/interop/qcow2.txt.
//
// Reading (Open, Image): L1/L2 mapping with a bounded table cache, zero
// clusters, compressed clusters (zlib and zstd), extended L2 entries
// (subclusters), external data files, backing chains (opened through the
// vdisk.Opener imagefmt supplies) and an allocation map per layer and per
// chain. Internal snapshots and persistent bitmaps are listed, not read.
// Encrypted images and unknown incompatible features are refused. Every
// offset and count read from the file is checked before use: a hostile
// image gives a vdisk.FormatError naming the offset, never a panic or an
// allocation beyond a fixed bound per table.
//
// Writing: Create and the streaming Writer (create.go, writer.go) write new
// version 3 images, compressed clusters made by Compressor; OpenRW (rw.go)
// writes existing images in place, keeping refcounts exact.
//
// The package knows nothing of backing file formats other than through
// vdisk.Image (OpenRW opens qcow2 and raw backing files itself when given
// no opener), and nothing of partitions or filesystems.
package qcow2
