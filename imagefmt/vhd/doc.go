// Package vhd reads Microsoft Virtual Hard Disk images (qemu's "vpc"
// format), as the "Virtual Hard Disk Image Format Specification" v1.0
// describes them: fixed disks (the data followed by a footer), dynamic disks
// (a dynamic header, a block allocation table and blocks each preceded by a
// sector bitmap) and differencing disks (dynamic disks whose sector bitmaps
// say which sectors come from the parent named by the parent locators).
//
// The virtual size follows qemu: the CHS geometry unless the creator is one
// known to use the footer's current size (Hyper-V, disk2vhd, qemu's
// force_size, XenServer), so a read equals `qemu-img convert -O raw`.
//
// It is read-only and is not a VHDX reader (see package vhdx).
package vhd
