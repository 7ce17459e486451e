package ntfswrite

import (
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// Options change how Open works.
type Options struct {
	// Name is the volume in errors ("p2").
	Name string
	// Now is the clock for the times the writer sets; nil means time.Now.
	Now func() time.Time
}

// FS is an NTFS volume open for a write transaction. It is not safe for
// concurrent use.
type FS struct {
	label string
	st    *stage
	now   time.Time
	nowNT int64

	sectorSize  int64
	clusterSize int64
	recSize     int64
	ixSize      int64 // index block size for new directories
	clusters    int64
	mftLCN      int64
	mirrLCN     int64
	mirrRecs    int64 // records $MFTMirr holds
	zoneStart   int64 // the MFT zone, kept free for the MFT to grow into
	zoneEnd     int64
	major       uint8
	minor       uint8

	upcase upcase

	recs  map[uint64]*mrec  // records read or changed by the transaction
	dirs  map[uint64]*index // directory indexes read or changed
	freed []run             // clusters released, cleared in $Bitmap by Finish
	// cursor is where the next data allocation search starts, mftCursor
	// the next MFT record search.
	cursor    int64
	mftCursor int64
	finished  bool
	began     bool     // the current operation changed the transaction
	failed    error    // an operation failed after it began changing it
	logFill   []Change // the $LogFile reset
	events    []Event
}

// Open reads the NTFS volume on dev (size bytes) and checks that it can be
// written: a refused volume returns a *RefusedError with every reason.
func Open(dev Device, size int64, opts Options) (*FS, error) {
	f := &FS{label: "ntfs", recs: map[uint64]*mrec{}, dirs: map[uint64]*index{}}
	if opts.Name != "" {
		f.label += " " + opts.Name
	}
	f.now = time.Now()
	if opts.Now != nil {
		f.now = opts.Now()
	}
	var err error
	if f.nowNT, err = ntfsTime(f.now); err != nil {
		return nil, err
	}
	if err := f.readBoot(dev, size); err != nil {
		return nil, err
	}
	if err := f.loadMFT(); err != nil {
		return nil, err
	}
	var why []string
	for _, check := range []func() ([]string, error){f.checkVolume, f.checkMirror, f.checkLogFile} {
		w, err := check()
		if err != nil {
			return nil, err
		}
		why = append(why, w...)
	}
	if len(why) > 0 {
		return nil, &RefusedError{FS: f.label, Reasons: why}
	}
	if err := f.loadUpcase(); err != nil {
		return nil, err
	}
	if _, err := f.openDir(recRoot); err != nil {
		return nil, fmt.Errorf("root directory: %w", err)
	}
	if why, err := f.checkHiberfile(); err != nil {
		return nil, err
	} else if len(why) > 0 {
		return nil, &RefusedError{FS: f.label, Reasons: why}
	}
	for _, n := range []uint64{recBitmap, recLogFile, recMFTMirr} {
		if _, err := f.sysData(n); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// readBoot checks the boot sector and derives the geometry.
func (f *FS) readBoot(dev Device, size int64) error {
	b := make([]byte, 512)
	tmp := &stage{dev: dev, size: size, name: f.label}
	if err := tmp.readDev(b, 0); err != nil {
		return f.corrupt("boot sector: %v", err)
	}
	var bs ntfs.BootSector
	decodeStruct(b, &bs)
	if string(bs.OEMID[:]) != "NTFS    " || b[510] != 0x55 || b[511] != 0xAA {
		return f.corrupt("no NTFS boot sector (OEM ID %q)", bs.OEMID[:])
	}
	bps := int64(bs.BytesPerSector)
	if bps < 512 || bps > 4096 || bits.OnesCount64(uint64(bps)) != 1 {
		return f.corrupt("bytes per sector %d", bps)
	}
	spc := int64(bs.SectorsPerCluster)
	if spc > 0x80 {
		if 256-spc > 12 {
			return f.corrupt("sectors per cluster 2^%d", 256-spc)
		}
		spc = 1 << (256 - spc)
	}
	if spc == 0 || bits.OnesCount64(uint64(spc)) != 1 {
		return f.corrupt("sectors per cluster %d", bs.SectorsPerCluster)
	}
	f.sectorSize, f.clusterSize = bps, bps*spc
	if f.clusterSize > 2<<20 {
		return f.corrupt("cluster size %d", f.clusterSize)
	}
	blockSize := func(c int8, what string) (int64, error) {
		var n int64
		switch {
		case c > 0 && c <= 64:
			n = int64(c) * f.clusterSize
		case c < 0 && c >= -31:
			n = 1 << -c
		}
		if n < 512 || n > 64<<10 || bits.OnesCount64(uint64(n)) != 1 {
			return 0, f.corrupt("%s size %d (boot sector value %d)", what, n, c)
		}
		return n, nil
	}
	var err error
	if f.recSize, err = blockSize(bs.ClustersPerMFTRecord, "MFT record"); err != nil {
		return err
	}
	if f.ixSize, err = blockSize(bs.ClustersPerIndexRecord, "index block"); err != nil {
		return err
	}
	if bs.NumberOfSectors <= 0 || bs.NumberOfSectors > (1<<62)/bps {
		return f.corrupt("number of sectors %d", bs.NumberOfSectors)
	}
	vol := bs.NumberOfSectors * bps
	if vol > size {
		return f.refuse("the volume is truncated: the boot sector says %d bytes, there are %d", vol, size)
	}
	f.clusters = bs.NumberOfSectors / spc
	if bs.MFTLCN <= 0 || bs.MFTLCN >= f.clusters || bs.MFTMirrLCN <= 0 || bs.MFTMirrLCN >= f.clusters {
		return f.corrupt("$MFT at cluster %d, $MFTMirr at %d, of %d", bs.MFTLCN, bs.MFTMirrLCN, f.clusters)
	}
	f.mftLCN, f.mirrLCN = bs.MFTLCN, bs.MFTMirrLCN
	// The stage unit divides clusters, records and index blocks.
	unit := min(f.clusterSize, f.recSize, f.ixSize)
	// The backup boot sector (the volume's last sector, or the middle one
	// on NT4) lies past the clusters: the transaction never writes there.
	f.st = newStage(dev, unit, f.clusters*f.clusterSize, f.label)
	// $MFTMirr holds the first four records, or one cluster of them
	// (ntfs-3g bootsect.c).
	f.mirrRecs = 4
	if f.clusterSize > 4*f.recSize {
		f.mirrRecs = f.clusterSize / f.recSize
	}
	// The MFT zone: 12.5% of the volume from the MFT on, halved until it
	// fits (ntfs-3g volume.c ntfs_mft_load); data is placed outside it.
	zone := f.clusters >> 3
	for f.mftLCN+zone >= f.clusters && zone > 0 {
		zone >>= 1
	}
	f.zoneStart, f.zoneEnd = f.mftLCN, f.mftLCN+zone
	f.cursor = f.zoneEnd
	return nil
}

// loadMFT reads $MFT's own record from where the boot sector says.
func (f *FS) loadMFT() error {
	b := make([]byte, f.recSize)
	off := f.mftLCN * f.clusterSize
	if err := f.st.readAt(b, off); err != nil {
		return err
	}
	r, err := parseRecord(b, recMFT, f.clusters)
	if errors.Is(err, errRecordFree) {
		return f.corrupt("$MFT record at offset %d is not in use", off)
	}
	if err != nil {
		return f.corrupt("$MFT record at offset %d: %v", off, err)
	}
	if r.find(atAttributeList, nil) != nil {
		return f.refuse("$MFT has an attribute list (its run list spans several records), which the writer does not handle")
	}
	d := r.find(atData, nil)
	if d == nil || d.resident || d.lowVCN != 0 || d.flags&(attrCompressionMask|attrEncrypted|attrSparse) != 0 {
		return f.corrupt("$MFT has no plain non-resident $DATA")
	}
	if d.init < 16*f.recSize || d.init%f.recSize != 0 || d.size%f.recSize != 0 || runsClusters(d.runs)*f.clusterSize != d.alloc {
		return f.corrupt("$MFT $DATA sizes: data %d, initialized %d, allocated %d", d.size, d.init, d.alloc)
	}
	for _, r := range d.runs {
		if r.LCN < 0 {
			return f.corrupt("$MFT $DATA has a hole")
		}
	}
	if lcn, _, _ := lcnOf(d.runs, 0); lcn != f.mftLCN {
		return f.corrupt("$MFT starts at cluster %d, the boot sector says %d", lcn, f.mftLCN)
	}
	bm := r.find(atBitmap, nil)
	if bm == nil || bm.flags&(attrCompressionMask|attrEncrypted|attrSparse) != 0 {
		return f.corrupt("$MFT has no $BITMAP")
	}
	if bm.valueSize()*8 < d.init/f.recSize {
		return f.corrupt("$MFT $BITMAP of %d bytes for %d records", bm.valueSize(), d.init/f.recSize)
	}
	f.recs[recMFT] = r
	return nil
}

// mftData is $MFT's $DATA attribute.
func (f *FS) mftData() *rattr { return f.recs[recMFT].find(atData, nil) }

// mftBitmap is $MFT's $BITMAP attribute.
func (f *FS) mftBitmap() *rattr { return f.recs[recMFT].find(atBitmap, nil) }

// sysData returns the plain non-resident unnamed $DATA of a system file
// ($Bitmap, $LogFile, $MFTMirr, $UpCase).
func (f *FS) sysData(num uint64) (*rattr, error) {
	r, err := f.record(num)
	if err != nil {
		return nil, err
	}
	d := r.find(atData, nil)
	if r.list != nil {
		return nil, f.refuse("system file %d has an attribute list", num)
	}
	if d == nil || d.resident || d.lowVCN != 0 || d.flags&(attrCompressionMask|attrEncrypted|attrSparse) != 0 || d.init != d.size {
		return nil, f.corrupt("system file %d has no plain non-resident $DATA", num)
	}
	for _, r := range d.runs {
		if r.LCN < 0 {
			return nil, f.corrupt("system file %d has a hole", num)
		}
	}
	if runsClusters(d.runs)*f.clusterSize != d.alloc || d.size > d.alloc {
		return nil, f.corrupt("system file %d: $DATA of %d bytes allocates %d in %d clusters", num, d.size, d.alloc, runsClusters(d.runs))
	}
	switch num {
	case recBitmap:
		if d.size*8 < f.clusters {
			return nil, f.corrupt("$Bitmap of %d bytes for %d clusters", d.size, f.clusters)
		}
	case recMFTMirr:
		if d.size < f.mirrRecs*f.recSize {
			return nil, f.corrupt("$MFTMirr of %d bytes for %d records", d.size, f.mirrRecs)
		}
		if lcn, _, _ := lcnOf(d.runs, 0); lcn != f.mirrLCN {
			return nil, f.corrupt("$MFTMirr starts at cluster %d, the boot sector says %d", lcn, f.mirrLCN)
		}
	}
	return d, nil
}

// recordBytes reads record num as it is in the transaction.
func (f *FS) recordBytes(num uint64) ([]byte, error) {
	d := f.mftData()
	if num >= uint64(d.init/f.recSize) {
		return nil, f.corrupt("record %d is past the MFT's %d initialized records", num, d.init/f.recSize)
	}
	b := make([]byte, f.recSize)
	if err := f.nrRead(d.runs, int64(num)*f.recSize, b); err != nil {
		return nil, err
	}
	return b, nil
}

// record returns base record num (in use) for reading or changing.
func (f *FS) record(num uint64) (*mrec, error) {
	if r, ok := f.recs[num]; ok {
		if r.base != 0 {
			return nil, f.corrupt("MFT record %d is an extension of record %d", num, r.base)
		}
		return r, nil
	}
	b, err := f.recordBytes(num)
	if err != nil {
		return nil, err
	}
	r, err := parseRecord(b, num, f.clusters)
	if errors.Is(err, errRecordFree) {
		return nil, fmt.Errorf("%s: MFT record %d: %w", f.label, num, ErrNotExist)
	}
	if err != nil {
		return nil, f.corrupt("MFT record %d: %v", num, err)
	}
	if r.base != 0 {
		return nil, f.corrupt("MFT record %d is an extension of record %d", num, r.base)
	}
	if len(f.recs) > 1<<20 {
		return nil, f.refuse("the transaction reads more than %d MFT records", 1<<20)
	}
	f.recs[num] = r
	if list := r.find(atAttributeList, nil); list != nil {
		if err := f.expandList(r, list); err != nil {
			delete(f.recs, num)
			return nil, err
		}
	}
	return r, nil
}

// writeRecords stages every changed record, and its copy in $MFTMirr for
// the first records (ntfs-3g mft.c ntfs_mft_records_write).
func (f *FS) writeRecords() error {
	d := f.mftData()
	mirr, err := f.sysData(recMFTMirr)
	if err != nil {
		return err
	}
	for num, r := range f.recs {
		if !r.dirty {
			continue
		}
		b, err := r.serialize(int(f.recSize))
		if err != nil {
			return f.refuse("%v (the record would need an attribute list)", err)
		}
		if int64(num+1)*f.recSize > d.init {
			return f.corrupt("record %d is past the MFT's initialized size", num)
		}
		if err := f.nrWrite(d.runs, int64(num)*f.recSize, b); err != nil {
			return err
		}
		if int64(num) < f.mirrRecs {
			if err := f.nrWrite(mirr.runs, int64(num)*f.recSize, b); err != nil {
				return err
			}
		}
		r.dirty = false
	}
	return nil
}
