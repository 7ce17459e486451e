// Package guestcheck proves the libvirt test environment end to end: the
// libvirtd that scripts/libvirt-up.sh starts, the test guest built by
// testimages, and the libvirt operations the backup, restore and inject
// tests build on (guest-agent freeze/thaw, a push-mode backup job with a
// checkpoint, ACPI shutdown), each checked against independent tools
// (qemu-img check, e2fsck, a kernel loop mount). It holds tests only.
package guestcheck
