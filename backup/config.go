package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vmmount/vmmount/backup/repo"
)

// configOut is where a session saves the VM configuration: the partial
// point's directory, and the VM's latest point, whose files are shared
// (hard links) instead of copied when they are equal. A direct-boot kernel
// and initrd are tens of MiB each and rarely change between points.
type configOut struct {
	dir  string
	prev *repo.Point // nil: the VM has no point yet
	c    repo.Config
}

// bytes saves b as name.
func (o *configOut) bytes(name string, b []byte) error {
	if err := os.WriteFile(filepath.Join(o.dir, name), b, 0o600); err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	o.record(name, hex.EncodeToString(sum[:]))
	return nil
}

// file saves the file at path as name: a link to the latest point's copy
// when that has the same digest, else a copy.
func (o *configOut) file(name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dst := filepath.Join(o.dir, name)
	if want := o.prevDigest(name); want != "" {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		// The previous point's file is immutable and had this digest
		// when it was saved (verify checks it still does).
		if sum := hex.EncodeToString(h.Sum(nil)); sum == want && os.Link(o.prev.Path(name), dst) == nil {
			o.record(name, sum)
			return nil
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	// What is recorded is the digest of the bytes written, even if the
	// file changes while it is read.
	_, err = io.Copy(out, io.TeeReader(f, h))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying %s: %w", path, err)
	}
	o.record(name, hex.EncodeToString(h.Sum(nil)))
	return nil
}

func (o *configOut) prevDigest(name string) string {
	if o.prev == nil {
		return ""
	}
	return o.prev.Manifest.Config.Files[name]
}

func (o *configOut) record(name, sum string) {
	if o.c.Files == nil {
		o.c.Files = map[string]string{}
	}
	o.c.Files[name] = sum
}
