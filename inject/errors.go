package inject

import (
	"errors"
	"fmt"
	"io/fs"
)

// Errors; test with errors.Is.
var (
	// ErrRefused means inject refused for safety and wrote nothing: the
	// VM runs, the image is in use, the filesystem needs repair or uses
	// something the writer does not handle, a name exists without
	// --overwrite. The message says why.
	ErrRefused = errors.New("refused")
	// ErrChanged means an undo was refused because the image changed
	// since the injection (the VM ran, say): restoring the old bytes
	// would corrupt it. It wraps ErrRefused.
	ErrChanged = fmt.Errorf("image changed since the injection: %w", ErrRefused)
	// ErrRolledBack means writing failed part way and the image was put
	// back as it was from the undo file.
	ErrRolledBack = errors.New("changes rolled back")
)

// refusedErr marks an error as a refusal while keeping its text and chain.
type refusedErr struct{ error }

func (e refusedErr) Is(t error) bool { return t == ErrRefused }
func (e refusedErr) Unwrap() error   { return e.error }

func refusef(format string, args ...any) error { return refusedErr{fmt.Errorf(format, args...)} }

// asRefusal marks err as a refusal.
func asRefusal(err error) error {
	if err == nil || errors.Is(err, ErrRefused) {
		return err
	}
	return refusedErr{err}
}

// notFound marks an error as a missing path (fs.ErrNotExist).
type notFoundErr struct{ error }

func (e notFoundErr) Is(t error) bool { return t == fs.ErrNotExist }
func (e notFoundErr) Unwrap() error   { return e.error }
