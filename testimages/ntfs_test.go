package testimages

import (
	"strings"
	"testing"
	"time"
)

// TestNTFSVariants builds every NTFS variant and checks its oracle holds
// the features the recipe promises.
func TestNTFSVariants(t *testing.T) {
	skipShort(t)
	for _, v := range NTFSVariants {
		t.Run(v.Name, func(t *testing.T) {
			x := GetNTFS(t, v)
			m, err := x.Oracle()
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range m.Entries {
				if e.Err != "" {
					t.Errorf("oracle %s: %s", e.Path, e.Err)
				}
				if e.Btime.IsZero() {
					t.Errorf("oracle %s: no creation time", e.Path)
				}
			}
			if len(m.Entries) < 1500 {
				t.Errorf("oracle has %d entries", len(m.Entries))
			}
			if len(m.HardlinkGroups()) < 3 {
				t.Errorf("hardlink groups %v", m.HardlinkGroups())
			}
			if e := m.Get("times/y1950-ns"); e == nil || !e.Mtime.Equal(time.Date(1950, 6, 15, 12, 0, 0, 123456700, time.UTC)) {
				t.Errorf("times/y1950-ns: %+v", e)
			}
			if e := m.Get("times/max"); e == nil || e.Mtime.Year() != 2500 {
				t.Errorf("times/max: %+v", e)
			}
			if e := m.Get("x/streams"); e == nil || !strings.HasPrefix(e.Xattrs["user.big"], "sha256:") || e.Xattrs["user.small"] != "text:tiny" {
				t.Errorf("x/streams: %+v", e)
			}
			if e := m.Get("x/win/junction"); e == nil || e.Type() != "symlink" || !strings.HasSuffix(e.Target, "/x/win/Target Dir") {
				t.Errorf("x/win/junction: %+v", e)
			}
			if e := m.Get("x/intx/fifo"); e == nil || e.Type() != "fifo" {
				t.Errorf("x/intx/fifo: %+v", e)
			}
			if x.Compressed {
				e := m.Get("x/compressed/text")
				if e == nil || !strings.HasPrefix(e.Xattrs[XattrNTFSAttrib], "hex:") || e.Xattrs[XattrNTFSAttrib][4+5] != '8' {
					t.Errorf("x/compressed/text not compressed: %+v", e)
				}
			}
		})
	}
}
