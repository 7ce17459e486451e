package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/backup/repo"
	"golang.org/x/term"
)

// globalOptions are the flags every command takes, and the one place output
// goes through.
type globalOptions struct {
	JSON  bool
	Quiet bool
	Debug bool
	// Repo is the repository directory (--repo, VMMOUNT_REPO, or
	// repo.DefaultDir): shared by backup, list, verify, prune, forget,
	// restore and mount.
	Repo string

	stdout io.Writer
	stderr io.Writer
}

func (o *globalOptions) AddFlags(c *cobra.Command) {
	f := c.PersistentFlags()
	f.BoolVar(&o.JSON, "json", false, "print machine-readable JSON instead of text")
	f.BoolVarP(&o.Quiet, "quiet", "q", false, "print nothing but errors and requested data; no progress bars")
	defRepo := os.Getenv("VMMOUNT_REPO")
	if defRepo == "" {
		defRepo = repo.DefaultDir
	}
	f.StringVar(&o.Repo, "repo", defRepo, "repository directory (also VMMOUNT_REPO)")
	f.BoolVar(&o.Debug, "debug", os.Getenv("VMMOUNT_DEBUG") != "", "print debug messages to stderr (also VMMOUNT_DEBUG=1)")
}

// printJSON writes v as indented JSON to stdout.
func (o *globalOptions) printJSON(v any) error {
	enc := json.NewEncoder(o.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printf writes text output to stdout.
func (o *globalOptions) printf(format string, args ...any) {
	fmt.Fprintf(o.stdout, format, args...)
}

// verbosef writes informational messages to stderr unless --quiet.
func (o *globalOptions) verbosef(format string, args ...any) {
	if !o.Quiet {
		fmt.Fprintf(o.stderr, format, args...)
	}
}

// warnf writes a warning to stderr, even with --quiet.
func (o *globalOptions) warnf(format string, args ...any) {
	fmt.Fprintf(o.stderr, "warning: "+format, args...)
}

// debugf writes debug messages with --debug.
func (o *globalOptions) debugf(format string, args ...any) {
	if o.Debug {
		fmt.Fprintf(o.stderr, "debug: "+format, args...)
	}
}

// showProgress says whether progress bars go to stderr: only on a terminal,
// never with --quiet or --json.
func (o *globalOptions) showProgress() bool {
	if o.Quiet || o.JSON {
		return false
	}
	f, ok := o.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
