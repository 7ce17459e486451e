// Package nbd is a small client for the Network Block Device protocol as
// QEMU serves it: fixed newstyle handshake, NBD_OPT_GO, structured replies,
// metadata contexts (base:allocation and qemu:dirty-bitmap:NAME) and
// concurrent reads over one Unix or TCP connection. It is what a pull-mode
// libvirt backup is read through: the export is the point-in-time view of a
// disk, and the dirty-bitmap context says which blocks changed since a
// checkpoint.
//
// It reads only: no writes, trims, TLS or extended headers. The server is
// trusted to serve the right bytes, but every length and offset it sends is
// checked before use, so a broken or hostile server yields an error, never
// a panic or an unbounded allocation.
//
// Reference: the NBD protocol, doc/proto.md of the NetworkBlockDevice/nbd
// repository ("Fixed newstyle negotiation", "Structured reply chunk
// message", "Metadata querying"), and QEMU's docs/interop/nbd.txt for the
// qemu: namespace.
package nbd
