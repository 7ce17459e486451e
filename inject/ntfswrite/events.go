package ntfswrite

// Operations an Event records.
const (
	OpCreate     = "create"      // a new file
	OpMkdir      = "mkdir"       // a new directory
	OpReplace    = "replace"     // a file's content replaced in place
	OpSetAttr    = "set-attr"    // a file's times or Windows attributes set
	OpIndexSplit = "index-split" // a full index block was split
	OpIndexGrow  = "index-grow"  // an index root moved into a block (the tree grew a level)
	OpMFTExtend  = "mft-extend"  // $MFT got more records
	OpLogReset   = "log-reset"   // $LogFile emptied
)

// Extent is a run of clusters.
type Extent struct {
	Start int64 `json:"start"`
	Len   int64 `json:"len"`
}

// Event is one thing the transaction does, for reports and --dry-run.
type Event struct {
	Op   string `json:"op"`
	Rec  uint64 `json:"rec"`            // the MFT record created, replaced, or the directory changed
	Dir  uint64 `json:"dir,omitempty"`  // the directory a new record is linked into
	Name string `json:"name,omitempty"` // the name added
	Size int64  `json:"size,omitempty"`
	// Resident says the content is in the MFT record.
	Resident bool `json:"resident,omitempty"`
	// Clusters are the clusters allocated for it, Freed those released.
	Clusters []Extent `json:"clusters,omitempty"`
	Freed    []Extent `json:"freed,omitempty"`
	Note     string   `json:"note,omitempty"`
}

func (f *FS) event(e Event) { f.events = append(f.events, e) }

// Events lists what the transaction does so far, in order.
func (f *FS) Events() []Event { return append([]Event(nil), f.events...) }

func extentsOf(runs []run) []Extent {
	var out []Extent
	for _, r := range runs {
		if r.LCN >= 0 {
			out = append(out, Extent{r.LCN, r.N})
		}
	}
	return out
}
