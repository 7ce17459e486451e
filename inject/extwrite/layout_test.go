package extwrite

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// fillRandom sets every exported integer field of v to a random value.
func fillRandom(rng *rand.Rand, v reflect.Value) {
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(rng.Uint64())
		case reflect.Array:
			for j := range f.Len() {
				f.Index(j).SetUint(rng.Uint64())
			}
		}
	}
}

// TestEncodersRoundTrip: what the encoders write, disklayout's decoders
// read back field for field.
func TestEncodersRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		var n disklayout.Inode
		fillRandom(rng, reflect.ValueOf(&n).Elem())
		n.ExtraIsize = 32
		raw := make([]byte, 256)
		putInode(raw, &n)
		got, err := disklayout.DecodeInode(raw)
		if err != nil || got != n {
			t.Fatalf("inode round trip:\n got %+v\nwant %+v", got, n)
		}
		var g disklayout.GroupDesc
		fillRandom(rng, reflect.ValueOf(&g).Elem())
		graw := make([]byte, disklayout.GroupDescSize64)
		putGroupDesc(graw, &g)
		if gg, err := disklayout.DecodeGroupDesc(graw); err != nil || gg != g {
			t.Fatalf("group descriptor round trip:\n got %+v\nwant %+v", gg, g)
		}
	}
	// 128-byte inodes keep the base only.
	var n disklayout.Inode
	n.Mode, n.Atime = 0o100644, 12345
	raw := make([]byte, disklayout.InodeBaseSize)
	putInode(raw, &n)
	if got, _ := disklayout.DecodeInode(raw); got.Mode != n.Mode || got.Atime != n.Atime {
		t.Errorf("128-byte inode: %+v", got)
	}
}

// TestRecLen: rec_len encodes back to what disklayout decodes, 64 KiB
// blocks included.
func TestRecLen(t *testing.T) {
	for _, bs := range []int{1024, 4096, 65536} {
		for _, n := range []int{12, 16, 1000, bs - 12, bs} {
			if n > bs {
				continue
			}
			if got := disklayout.RecLen(encodeRecLen(n, bs), bs); got != n {
				t.Errorf("block size %d: rec_len %d reads back as %d", bs, n, got)
			}
		}
	}
}

// TestEncodeTime: times round-trip through the inode encoding, with epoch
// bits past 2038 and clamping outside the range.
func TestEncodeTime(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Time
		extra    bool
	}{
		{time.Unix(1700000000, 123456789), time.Unix(1700000000, 123456789), true},
		{time.Unix(-1, 5), time.Unix(-1, 5), true},
		{time.Unix(1<<31+100, 7), time.Unix(1<<31+100, 7), true},
		{time.Unix(1<<33, 9), time.Unix(1<<33, 9), true},
		{time.Unix(1<<40, 0), time.Unix(maxTimeExtra, 999999999), true},
		{time.Unix(-1<<40, 3), time.Unix(minTime, 0), true},
		{time.Unix(1700000000, 123456789), time.Unix(1700000000, 0), false},
		{time.Unix(1<<33, 0), time.Unix(maxTime32, 0), false},
	} {
		s, x := encodeTime(tc.in, tc.extra)
		if got := disklayout.DecodeTime(s, x, tc.extra); !got.Equal(tc.want) {
			t.Errorf("%v (extra %v): got %v, want %v", tc.in, tc.extra, got, tc.want)
		}
	}
}
