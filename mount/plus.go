package mount

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// READDIRPLUS answers a listing with the attributes of every entry, so a
// program that stats what it lists (ls -l, tar, du, cp -a, rsync) needs no
// LOOKUP per entry afterwards. It has a price: the kernel makes an inode for
// each entry, and that is most of what a walk that only needs names and
// types (find, the shell's globbing) pays here, half again as long as
// without. So attributes go only with the entries a program is known to
// want: directories always (every walk descends into them), other files when
// the program has been seen to stat files it listed, that is when it looked
// one up after a listing that left the attributes out. Programs are known by
// name, for the life of the mount; a few that always stat are known from the
// start. The kernel's own heuristic (FUSE_READDIRPLUS_AUTO) cannot tell
// these apart: it sends READDIRPLUS for the first chunk of every directory.
type plusPolicy struct {
	mu     sync.Mutex
	statty map[string]bool   // program name -> stats what it lists
	comm   map[uint32]string // caller pid -> program name, a small cache
}

// statters are programs that stat every entry they list.
var statters = []string{"ls", "tar", "du", "cp", "rsync", "stat", "mc", "bsdtar"}

const commCacheSize = 256

func newPlusPolicy() *plusPolicy {
	p := &plusPolicy{statty: map[string]bool{}, comm: map[uint32]string{}}
	for _, s := range statters {
		p.statty[s] = true
	}
	return p
}

// filesToo reports whether a listing for ctx's caller carries the
// attributes of files as well as of directories.
func (p *plusPolicy) filesToo(ctx context.Context) bool {
	name, ok := p.caller(ctx)
	if !ok {
		return true // unknown caller (another pid namespace): all
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.statty[name]
}

// lookedUp is told of a LOOKUP of a file (not a directory): its caller
// stats what it lists.
func (p *plusPolicy) lookedUp(ctx context.Context) {
	name, ok := p.caller(ctx)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.statty) < 4096 {
		p.statty[name] = true
	}
}

func (p *plusPolicy) caller(ctx context.Context) (string, bool) {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 {
		return "", false
	}
	pid := fc.Caller.Pid
	p.mu.Lock()
	name, ok := p.comm[pid]
	p.mu.Unlock()
	if ok {
		return name, true
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	if err != nil {
		return "", false
	}
	name = strings.TrimSpace(string(b))
	p.mu.Lock()
	if len(p.comm) >= commCacheSize {
		clear(p.comm) // pids come and go; start over
	}
	p.comm[pid] = name
	p.mu.Unlock()
	return name, true
}
