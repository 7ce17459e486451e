package backup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// cleanupTimeout bounds each undo action (and the reconnection to libvirtd
// it may need).
const cleanupTimeout = 2 * time.Minute

// undoStack holds the actions that put a VM back the way it was. Push an
// action before the call that changes the state (an undo of something that
// did not happen must be harmless), drop it once the state is restored on
// the normal path, and run what is left on every other path.
type undoStack struct {
	mu  sync.Mutex
	ops []*undoOp
}

type undoOp struct {
	what string
	fn   func(ctx context.Context) error
	done bool
}

// push registers fn and returns a handle to run or drop it.
func (s *undoStack) push(what string, fn func(ctx context.Context) error) *undoOp {
	op := &undoOp{what: what, fn: fn}
	s.mu.Lock()
	s.ops = append(s.ops, op)
	s.mu.Unlock()
	return op
}

// run runs op now (on the normal path) and removes it, so it is not run
// again by runAll.
func (s *undoStack) run(ctx context.Context, op *undoOp) error {
	s.mu.Lock()
	if op.done {
		s.mu.Unlock()
		return nil
	}
	op.done = true
	s.mu.Unlock()
	if err := op.fn(ctx); err != nil {
		return fmt.Errorf("%s: %w", op.what, err)
	}
	return nil
}

// drop forgets op without running it.
func (s *undoStack) drop(op *undoOp) {
	s.mu.Lock()
	op.done = true
	s.mu.Unlock()
}

// runAll runs the actions not yet done, newest first, each with its own
// fresh context (the caller's may be cancelled: that is often why we are
// here), and joins their errors.
func (s *undoStack) runAll(parent context.Context) error {
	base := context.WithoutCancel(parent)
	var errs []error
	for {
		s.mu.Lock()
		var op *undoOp
		for i := len(s.ops) - 1; i >= 0; i-- {
			if !s.ops[i].done {
				op = s.ops[i]
				break
			}
		}
		if op != nil {
			op.done = true
		}
		s.mu.Unlock()
		if op == nil {
			break
		}
		ctx, cancel := context.WithTimeout(base, cleanupTimeout)
		if err := op.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cleanup: %s: %w", op.what, err))
		}
		cancel()
	}
	return errors.Join(errs...)
}
