// Package imagefmt turns virtual disk image files into the bytes the guest
// sees. Open detects the format from the content (never the file name),
// follows backing chains, and returns an Image: an io.ReaderAt of the virtual
// disk with its size and an allocation map, so copies can skip holes.
//
// Formats live in subpackages (raw, qcow2, vmdk, vhd, vhdx); shared types in
// vdisk and are re-exported here. Writers (qcow2 and sparse raw creation,
// in-place qcow2 writes) are in the qcow2 package and in convert.go.
//
// imagefmt knows nothing of partitions or filesystems (that is fsread) and
// never imports libvirt, FUSE or cobra.
package imagefmt
