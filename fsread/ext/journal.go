package ext

// replayJournal is filled in with the jbd2 package.
func (f *FS) replayJournal() error { return nil }
