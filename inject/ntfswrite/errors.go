package ntfswrite

import (
	"errors"
	"fmt"
	"strings"
)

// Errors; test with errors.Is.
var (
	// ErrRefused means the volume, directory or file is in a state or
	// uses a structure this writer does not handle safely; nothing was
	// changed. The error text says why.
	ErrRefused = errors.New("refused")
	// ErrCorrupt means metadata the writer needs is inconsistent; run
	// chkdsk (or ntfsfix) first.
	ErrCorrupt = errors.New("NTFS metadata is inconsistent")
	// ErrNoSpace means the volume has too few free clusters or MFT
	// records, or a record has no room for what must be added to it.
	ErrNoSpace = errors.New("no space left on the volume")
	// ErrExist means a name to create is already there.
	ErrExist = errors.New("already exists")
	// ErrNotExist means a name looked up is not there.
	ErrNotExist = errors.New("does not exist")
)

// RefusedError lists why a volume (or an object on it) cannot be written;
// it wraps ErrRefused.
type RefusedError struct {
	FS      string
	Reasons []string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s: refusing to write: %s", e.FS, strings.Join(e.Reasons, "; "))
}

func (e *RefusedError) Unwrap() error { return ErrRefused }

func (f *FS) refuse(format string, args ...any) error {
	return &RefusedError{FS: f.label, Reasons: []string{fmt.Sprintf(format, args...)}}
}

func (f *FS) corrupt(format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", f.label, fmt.Sprintf(format, args...), ErrCorrupt)
}

func (f *FS) noSpace(format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", f.label, fmt.Sprintf(format, args...), ErrNoSpace)
}
