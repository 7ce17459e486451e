package vhdx

// replayLog is called when the current header names a log (section 2.3):
// the image was not closed cleanly.
func (img *Image) replayLog() error {
	return img.unsupported(Header1Offset+48, img.hdr.LogGUID, "the log must be replayed first (the image was not closed cleanly)")
}
