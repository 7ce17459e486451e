// Package testimages builds the disk images vmmount is tested and measured
// on, with real tools (qemu-img, mkfs.*, sgdisk, ntfs-3g, lvm2), together
// with the oracle an independent reader gives for each (qemu-img convert -O
// raw, a kernel loop mount, ntfs-3g). Images are built once and cached under
// $VMMOUNT_TESTIMAGES (default /var/tmp/vmmount-testimages), keyed by name and
// recipe version, so reruns are fast and concurrent test binaries share them.
//
// Nothing here is used by the product; tests, benchmarks and `make demo` use
// it.
package testimages
