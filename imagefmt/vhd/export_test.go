package vhd

// DiffNamingParent returns a small differencing disk whose locators name
// parent, for tests in package vhd_test.
func DiffNamingParent(parent string) []byte {
	d := &testDisk{size: 64 << 10, blockSize: 4096, diskType: TypeDifferencing, parentRel: parent, parentName: parent,
		sectors: map[int64][]byte{1: make([]byte, SectorSize)}}
	return d.build()
}
