package main

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/progress"
)

// volumeReport is the volume part of `info` for one image: its disk's
// partition table and volumes, and the LVs that have a PV on it (an LV
// spanning disks is in the report of each). The images given together are
// one VM's disks, so LVM volume groups are assembled across them.
type volumeReport struct {
	Disk      *fsread.Disk `json:"disk,omitempty"`
	DiskError string       `json:"disk_error,omitempty"`
	// Volumes lists at least name, path, offset, size, fs, label, uuid,
	// readable and (when not readable) error of every volume.
	Volumes        []*fsread.Volume `json:"volumes"`
	VolumeWarnings []string         `json:"volume_warnings,omitempty"`
	VolumeErrors   []string         `json:"volume_errors,omitempty"`
}

// addVolumes opens the images as one VM's disks and fills in each report's
// volumes. It returns the LVs, for the text output.
func addVolumes(ctx context.Context, names []string, imgs []imagefmt.Image, reports []imageReport) ([]*fsread.Volume, error) {
	var srcs []fsread.DiskSource
	for i, img := range imgs {
		srcs = append(srcs, fsread.DiskSource{Name: fsread.DiskName(names[i]), Image: img, SectorSize: img.Info().LogicalBlock})
	}
	set, err := fsread.OpenSet(ctx, srcs)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	var errs []string
	for _, e := range set.Errors() {
		errs = append(errs, e.Error())
	}
	var lvs []*fsread.Volume
	for _, v := range set.Volumes() {
		if v.Kind == fsread.KindLV {
			lvs = append(lvs, v)
		}
	}
	for i, d := range set.Disks() {
		r := &reports[i].volumeReport
		r.Disk = d
		if d.Err != nil {
			r.DiskError = d.Err.Error()
		}
		r.Volumes = append([]*fsread.Volume{}, d.Volumes...)
		for _, lv := range lvs {
			if len(set.Disks()) == 1 || usesDisk(lv, d) {
				r.Volumes = append(r.Volumes, lv)
			}
		}
		r.VolumeWarnings = set.Warnings()
		r.VolumeErrors = errs
	}
	return lvs, nil
}

// usesDisk says whether an LV has a PV on disk d.
func usesDisk(lv *fsread.Volume, d *fsread.Disk) bool {
	return slices.ContainsFunc(lv.LV.PVs, func(p string) bool {
		return p == d.Path || strings.HasPrefix(p, d.Path+"/")
	})
}

// printVolumes writes the volume section of `info` for one image; LVs
// are left out unless withLVs (with several images they come once, last).
func printVolumes(g *globalOptions, r volumeReport, withLVs bool) {
	if r.Disk == nil {
		return
	}
	d := r.Disk
	switch {
	case r.DiskError != "":
		g.printf("partition table: damaged: %s\n", r.DiskError)
	case d.Table != "":
		t := d.Table
		if d.SectorSize != 0 && d.SectorSize != 512 {
			t += ", " + strconv.Itoa(d.SectorSize) + "-byte sectors"
		}
		if d.Hybrid {
			t += ", hybrid MBR"
		}
		g.printf("partition table: %s (id %s)\n", t, d.TableID)
	default:
		g.printf("partition table: none\n")
	}
	for _, w := range d.Warnings {
		g.printf("warning: %s\n", w)
	}
	var vols []*fsread.Volume
	for _, v := range r.Volumes {
		if withLVs || v.Kind != fsread.KindLV {
			vols = append(vols, v)
		}
	}
	if len(vols) > 0 {
		g.printf("volumes:\n")
		printVolumeRows(g, vols)
	}
	if withLVs {
		for _, w := range r.VolumeWarnings {
			g.printf("warning: %s\n", w)
		}
		for _, e := range r.VolumeErrors {
			g.printf("error: %s\n", e)
		}
	}
}

// printVolumeRows prints volumes as an aligned table, each unreadable one
// followed by why.
func printVolumeRows(g *globalOptions, vols []*fsread.Volume) {
	rows := [][]string{{"  PATH", "FS", "SIZE", "OFFSET", "LABEL", "UUID"}}
	for _, v := range vols {
		off := "-"
		if v.Kind == fsread.KindPartition {
			off = strconv.FormatInt(v.Offset, 10)
		}
		fs := v.FSType
		if v.FSVersion != "" && v.FSType == fsread.TypeVFAT {
			fs += " (" + v.FSVersion + ")"
		}
		rows = append(rows, []string{"  " + v.Path, fs, progress.Bytes(v.Size), off, quoteLabel(v.Label), v.UUID})
	}
	printColumns(g, rows)
	for _, v := range vols {
		if err := v.Err(); err != nil {
			g.printf("  %s: not readable: %s\n", v.Path, strings.TrimPrefix(err.Error(), v.Path+": "))
		}
		for _, w := range v.Warnings {
			g.printf("  %s: warning: %s\n", v.Path, w)
		}
	}
}
