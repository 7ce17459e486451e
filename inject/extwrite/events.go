package extwrite

import "strconv"

// Operations an Event records.
const (
	OpCreate        = "create"         // a new regular file
	OpMkdir         = "mkdir"          // a new directory
	OpSymlink       = "symlink"        // a new symlink
	OpReplace       = "replace"        // a regular file's content replaced in place
	OpReplaceLink   = "replace-link"   // a symlink's target replaced in place
	OpDirEntry      = "entry"          // a name added to a directory
	OpDirGrow       = "dir-grow"       // a directory got a new block
	OpHtreeSplit    = "htree-split"    // a full htree leaf was split
	OpHtreeNode     = "htree-node"     // a new htree index block
	OpInlineConvert = "inline-convert" // an inline directory moved into a block
	OpHtreeIndex    = "htree-index"    // a full one-block directory got an htree index
)

// Extent is a run of filesystem blocks.
type Extent struct {
	Start uint64 `json:"start"`
	Len   uint64 `json:"len"`
}

// Event is one thing the transaction does, for reports and --dry-run.
type Event struct {
	Op   string `json:"op"`
	Ino  uint32 `json:"ino"`            // the inode created, replaced, or the directory changed
	Dir  uint32 `json:"dir,omitempty"`  // the directory a new inode is linked into
	Name string `json:"name,omitempty"` // the name added
	Size int64  `json:"size,omitempty"`
	Mode uint16 `json:"mode,omitempty"`
	// Blocks are the blocks allocated for it, Freed those released.
	Blocks []Extent `json:"blocks,omitempty"`
	Freed  []Extent `json:"freed,omitempty"`
	Note   string   `json:"note,omitempty"`
}

func (f *FS) event(e Event) { f.events = append(f.events, e) }

// Events lists what the transaction does so far, in order.
func (f *FS) Events() []Event { return append([]Event(nil), f.events...) }

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// appendExtent adds a run to a list, merging it with the last one when
// contiguous.
func appendExtent(l []Extent, start, n uint64) []Extent {
	if k := len(l); k > 0 && l[k-1].Start+l[k-1].Len == start {
		l[k-1].Len += n
		return l
	}
	return append(l, Extent{start, n})
}
