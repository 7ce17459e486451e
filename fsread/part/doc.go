// Package part reads the partition tables of a disk: MBR (with extended and
// logical partitions) and GPT, including protective and hybrid MBRs and GPT
// disks with 512-byte or 4 KiB logical sectors.
//
// Partitions are numbered exactly as Linux numbers them (block/partitions
// msdos.c and efi.c): MBR primary slots are 1 to 4 whether or not earlier
// slots are empty, logical partitions are 5 and up in EBR chain order, GPT
// partitions are their entry index plus one. The numbers are what users see
// as /dev/vda<N>, and they are the names vmmount gives volumes ("p<N>").
//
// Where vmmount deliberately differs from the kernel, it reads more, never
// less, and says so in Table.Warnings: a damaged primary GPT falls back to
// the backup header at the last LBA (the kernel does that only with the
// "gpt" boot parameter); an EBR chain that loops stops at the loop instead
// of repeating partitions until the 255-partition limit.
//
// Why our own GPT parser and not github.com/diskfs/go-diskfs: measured on
// go-diskfs at commit c5b3b50 (July 2026), its gpt.Read allocates
// NumberOfPartitionEntries*SizeOfPartitionEntry bytes straight from the
// header (a crafted header asks for up to 2^64 bytes; the product of two
// uint32 can overflow int and panic in make), it needs the caller to know the
// logical sector size (no detection of 4 KiB sectors), requires a header of
// exactly 92 bytes and revision 1.0, does not check partition entries against
// the disk, returns untyped fmt errors, and its MBR reader does not follow
// extended partitions at all. It would pull its whole module graph (squashfs,
// iso9660, compressors, logrus) into go.sum for ~300 lines of parsing that
// must anyway be fuzzed and return our errors. See gpt.go for the checks.
//
// What it is not for: it does not write tables, does not read BSD, Solaris
// or other nested labels inside MBR partitions, and knows nothing of what is
// inside partitions (package fsread probes them).
package part
