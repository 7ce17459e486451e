package repo

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// SchemaVersion is the manifest schema this code writes. Readers accept
// versions up to it and refuse newer ones.
const SchemaVersion = 1

// ManifestFile is the manifest's name inside a point directory.
const ManifestFile = "manifest.json"

// Backup modes.
const (
	ModeOffline  = "offline"
	ModePause    = "pause"
	ModeSnapshot = "snapshot"
	ModeImages   = "images" // plain image files without libvirt
)

// Consistency levels reached by a point.
const (
	ConsistencyOffline = "offline"          // the VM was shut off
	ConsistencyPaused  = "paused"           // the VM was paused while copied
	ConsistencyFrozen  = "frozen"           // guest filesystems frozen by the agent
	ConsistencyCrash   = "crash-consistent" // point-in-time, no quiescing
)

// How a disk's changes were found (Disk.Changes).
const (
	ChangesFull       = "full"
	ChangesCheckpoint = "checkpoint"
	ChangesHashes     = "hashes"
	ChangesMerged     = "merged" // its parent was merged into it (prune)
)

// Manifest describes a restore point. It is written last into the partial
// directory, so a point without a manifest is never published.
type Manifest struct {
	Schema      int       `json:"schema"`
	ID          string    `json:"id"`
	VM          VMInfo    `json:"vm"`
	Time        time.Time `json:"time"`
	Mode        string    `json:"mode"`
	Consistency string    `json:"consistency"`
	// Parent is the id of the point the incremental images are overlays
	// on; empty for a full point.
	Parent string `json:"parent,omitempty"`
	// ChainLength counts points from the last full one (1 for a full).
	ChainLength int    `json:"chain_length"`
	Disks       []Disk `json:"disks"`
	Config      Config `json:"config"`
	// Timings, for reports.
	DurationMS int64    `json:"duration_ms"`
	PauseMS    int64    `json:"pause_ms,omitempty"`  // how long the VM was paused
	FreezeMS   int64    `json:"freeze_ms,omitempty"` // how long filesystems were frozen
	Warnings   []string `json:"warnings,omitempty"`
	Tool       string   `json:"tool"` // "vmmount <version>"
}

// VMInfo identifies the VM.
type VMInfo struct {
	Name string `json:"name"`
	UUID string `json:"uuid,omitempty"`
}

// Disk is one captured disk.
type Disk struct {
	Target       string `json:"target"`        // vda, sdb, ...
	Source       string `json:"source"`        // the disk's path (or volume) when captured
	SourceFormat string `json:"source_format"` // format of the source
	VirtualSize  int64  `json:"virtual_size"`
	Image        string `json:"image"`  // file name inside the point directory
	Format       string `json:"format"` // "qcow2" or "raw"
	// Compression of the image's clusters ("zstd", "zlib"), "" for none.
	Compression string `json:"compression,omitempty"`
	// Backing is the image's backing file as recorded in it (relative),
	// empty for a full image.
	Backing string `json:"backing,omitempty"`
	// ChangedBytes is the guest data this point stored for the disk;
	// StoredBytes the image file's allocated size.
	ChangedBytes int64 `json:"changed_bytes"`
	StoredBytes  int64 `json:"stored_bytes"`
	// ImageSHA256 is the digest of the image file as written.
	ImageSHA256 string `json:"image_sha256"`
	ImageSize   int64  `json:"image_size"`
	// Hashes names the file of per-block digests of the guest view of the
	// whole disk (see blockhash.go); ContentSHA256 is the digest of that
	// list, which identifies the disk content.
	Hashes        string `json:"hashes"`
	HashBlockSize int64  `json:"hash_block_size"`
	ContentSHA256 string `json:"content_sha256"`
	// Checkpoint is the libvirt checkpoint created with this point, used
	// for the next incremental.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Changes says how the blocks to store were found: ChangesFull (the
	// whole disk, no parent), ChangesCheckpoint (a checkpoint's dirty
	// bitmap) or ChangesHashes (every block compared with the parent's
	// digest).
	Changes string `json:"changes,omitempty"`
}

// Config lists the VM configuration files saved with the point.
type Config struct {
	DomainXML string `json:"domain_xml,omitempty"`
	NVRAM     string `json:"nvram,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	Initrd    string `json:"initrd,omitempty"`
	// Files maps each saved file to its SHA-256.
	Files map[string]string `json:"files,omitempty"`
}

// ReadManifest reads and checks a point's manifest.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrCorrupt, err)
	}
	if m.Schema < 1 || m.Schema > SchemaVersion {
		return nil, fmt.Errorf("%s: manifest schema %d not supported (this vmmount reads up to %d)", path, m.Schema, SchemaVersion)
	}
	if err := checkID(m.ID); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, d := range m.Disks {
		if !isPlainName(d.Image) || (d.Hashes != "" && !isPlainName(d.Hashes)) || !isPlainName(d.Target) {
			return nil, fmt.Errorf("%s: %w: disk %q names a file outside the point", path, ErrCorrupt, d.Target)
		}
	}
	return &m, nil
}

// writeManifest writes m as indented JSON, fsynced.
func writeManifest(path string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileSync(path, append(b, '\n'), 0o644)
}
