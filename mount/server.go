package mount

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// Options change how a tree is served.
type Options struct {
	// AllowOther lets users other than the one mounting see the tree.
	AllowOther bool
	// FsName is shown as the source in /proc/mounts and df.
	FsName string
	// OnError is told, once per path, of errors that became EIO (corrupt
	// objects, volumes that failed to open). It may be called from many
	// goroutines. The mount keeps serving.
	OnError func(path string, err error)
	// Debug logs every FUSE request to stderr (go-fuse's debug output).
	Debug bool
}

// Server is a served mount.
type Server struct {
	srv      *fuse.Server
	dir      string
	opts     Options
	mtime    time.Time
	synthIno atomic.Uint64
	volID    atomic.Uint64

	mu       sync.Mutex
	reported map[string]bool
	big      map[[2]uint64]uint64
	bigNext  uint64
	dev      uint64 // st_dev of the mount, names its FUSE connection
	pf       *prefetcher
	plus     *plusPolicy
}

// CheckMountpoint fails early, before expensive work, when dir cannot be a
// mountpoint: it must be an existing, empty directory that is not mounted.
func CheckMountpoint(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("mountpoint %s is not empty", dir)
	}
	return nil
}

// Mount serves root at dir and returns once the kernel sees the mount.
// As root it mounts directly (no fusermount); otherwise it uses
// fusermount3.
func Mount(dir string, root *Dir, opts Options) (*Server, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{dir: abs, opts: opts, mtime: root.Mtime, reported: map[string]bool{}, big: map[[2]uint64]uint64{}, bigNext: 1 << 62}
	if s.mtime.IsZero() {
		s.mtime = time.Now()
	}
	s.synthIno.Store(1) // 1 is the root
	t := timeout
	logger := log.New(io.Discard, "", 0)
	if opts.Debug {
		logger = log.New(os.Stderr, "fuse: ", log.LstdFlags)
	}
	name := opts.FsName
	if name == "" {
		name = "vmmount"
	}
	fo := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:   opts.AllowOther,
			FsName:       name,
			Name:         "vmmount",
			DirectMount:  true,
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			Debug:        opts.Debug,
			// Reads are served from memory (ReadResultData); splicing
			// 1 MiB replies overflows the default pipe size.
			DisableSplice: true,
			Logger:        logger,
			Options:       []string{"ro", "default_permissions"},
		},
		EntryTimeout:    &t,
		AttrTimeout:     &t,
		NegativeTimeout: &t,
		RootStableAttr:  &gofs.StableAttr{Ino: 1, Mode: fsys.S_IFDIR},
		// Mode 0000 is a real guest mode, not "unset".
		NullPermissions: true,
	}
	s.pf = newPrefetcher()
	s.plus = newPlusPolicy()
	rootNode := &dirNode{srv: s, d: root, ino: 1}
	fo.MountOptions.ExtraCapabilities |= fuse.CAP_NO_OPENDIR_SUPPORT
	srv, err := fuse.NewServer(rawFS{gofs.NewNodeFS(rootNode, fo)}, abs, &fo.MountOptions)
	if err == nil {
		go srv.Serve()
		err = srv.WaitMount()
	}
	if err != nil {
		s.pf.close()
		return nil, fmt.Errorf("mount %s: %w", abs, err)
	}
	s.srv = srv
	go func() {
		srv.Wait()
		s.pf.close()
	}()
	s.tuneReadahead()
	return s, nil
}

// Dir is where the tree is mounted.
func (s *Server) Dir() string { return s.dir }

// Wait blocks until the mount is gone (unmounted by Unmount or umount).
func (s *Server) Wait() {
	s.srv.Wait()
}

// Unmount detaches the mount; a busy mount is detached lazily so Ctrl-C
// always leaves no stale mount behind.
func (s *Server) Unmount() error {
	err := s.srv.Unmount()
	if err != nil {
		if lerr := syscall.Unmount(s.dir, syscall.MNT_DETACH); lerr == nil {
			err = nil
			// A lazily detached mount lives on while something holds
			// it; abort the connection so the server (and Wait) ends
			// now. Those holders then get ENOTCONN.
			s.abort()
		}
	}
	return err
}

func (s *Server) nextSynthIno() uint64 { return s.synthIno.Add(1) }
func (s *Server) nextVolID() uint64    { return s.volID.Add(1) }

// bigIno maps guest inode numbers too large for the packed form.
func (s *Server) bigIno(vol, ino uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]uint64{vol, ino}
	if v, ok := s.big[k]; ok {
		return v
	}
	s.bigNext++
	s.big[k] = s.bigNext
	return s.bigNext
}

// report tells OnError once per path.
func (s *Server) report(path string, err error) {
	if s.opts.OnError == nil {
		return
	}
	s.mu.Lock()
	key := path + "\x00" + err.Error()
	seen := s.reported[key]
	s.reported[key] = true
	s.mu.Unlock()
	if !seen {
		s.opts.OnError(path, err)
	}
}

// newNode makes the FUSE node of a tree node.
func (s *Server) newNode(nd Node) (gofs.InodeEmbedder, uint64) {
	ino := s.nextSynthIno()
	switch v := nd.(type) {
	case *Dir:
		return &dirNode{srv: s, d: v, ino: ino}, ino
	case *RawFile:
		return &rawNode{r: v.R, size: v.Size, f: v, ino: ino}, ino
	case *Text:
		return &rawNode{r: strings.NewReader(string(v.Data)), size: int64(len(v.Data)), t: v, ino: ino}, ino
	case *Symlink:
		return &linkNode{l: v, ino: ino}, ino
	case *Volume:
		return &guestNode{srv: s, vol: &volState{v: v}, fino: ino}, ino
	}
	panic(fmt.Sprintf("mount: unknown node type %T", nd))
}

// tuneReadahead raises the kernel's readahead for this FUSE connection
// (128 KiB by default) so large sequential reads arrive in big requests.
// Only root may; failure is harmless.
func (s *Server) tuneReadahead() {
	var st syscall.Stat_t
	if err := syscall.Stat(s.dir, &st); err != nil {
		return
	}
	s.dev = st.Dev
	major, minor := (st.Dev>>8)&0xfff, (st.Dev&0xff)|((st.Dev>>12)&0xfff00)
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	if err := os.WriteFile(p, []byte("1024"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return
	}
}

// abort ends the FUSE connection through /sys/fs/fuse/connections (root
// only; harmless otherwise).
func (s *Server) abort() {
	if s.dev == 0 {
		return
	}
	const ctl = "/sys/fs/fuse/connections"
	minor := (s.dev & 0xff) | ((s.dev >> 12) & 0xfff00)
	p := fmt.Sprintf("%s/%d/abort", ctl, minor)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		syscall.Mount("fusectl", ctl, "fusectl", 0, "")
	}
	os.WriteFile(p, []byte("1"), 0)
}
