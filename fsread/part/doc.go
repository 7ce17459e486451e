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
// Why our own GPT parser and not github.com/diskfs/go-diskfs, measured on
// v1.9.4 (its latest release) on images made by sgdisk and sfdisk: it does
// fall back to the backup GPT, but it needs the caller to know the logical
// sector size (a 4 KiB-sector GPT read as 512 fails: no detection); a header
// with a valid CRC asking for 8M entries of 128 bytes made gpt.Read allocate
// 1 GiB for a 64 MiB disk before failing (it sizes the entry array from the
// header, NumberOfPartitionEntries*SizeOfPartitionEntry as int, unchecked
// against the disk); it requires a 92-byte header and revision 1.0 exactly,
// does not check entries against the disk, returns untyped fmt errors; and
// mbr.Read lists an extended partition but none of its logical ones. It would
// also bring its module graph (squashfs, iso9660, compressors, logrus) into
// go.sum, for ~300 lines of parsing that must be fuzzed and return our errors
// anyway. See gpt.go for the checks we make.
//
// What it is not for: it does not write tables, does not read BSD, Solaris
// or other nested labels inside MBR partitions, and knows nothing of what is
// inside partitions (package fsread probes them).
package part
