// Package runs is the read path the sparse virtual disk formats (vmdk, vhd,
// vhdx) share. A format describes its layout as a Mapper: for a virtual
// offset, the run of bytes that starts there and where it lives (a host file
// at an offset, zeros, the backing image, or a decoder such as a compressed
// VMDK grain). Layer turns a Mapper into exact io.ReaderAt semantics and an
// allocation map, coalescing runs that are contiguous in the same host file
// into single preads so large sequential reads cost few system calls.
//
// It is not for formats with their own fast paths (qcow2, raw), and it knows
// nothing of any on-disk structure: formats validate their tables before they
// hand out runs.
package runs
