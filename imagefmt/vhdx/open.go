package vhdx

import "github.com/vmmount/vmmount/imagefmt/vdisk"

// Open reads the image in f. The returned image owns f (and closes it).
func Open(f vdisk.File, opts vdisk.OpenOptions) (vdisk.Image, error) {
	return nil, &vdisk.FormatError{Image: opts.Name, Off: -1, Msg: "vhdx is not implemented yet", Err: vdisk.ErrUnsupported}
}
