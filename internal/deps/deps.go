//go:build tools

// Package deps pins the modules the project builds on before every package
// uses them, so parallel work does not race on go.mod. Remove an import here
// once a real package imports it.
package deps

import (
	_ "github.com/digitalocean/go-libvirt"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/hanwen/go-fuse/v2/fs"
	_ "github.com/klauspost/compress/zstd"
	_ "libvirt.org/go/libvirtxml"
	_ "www.velocidex.com/golang/go-ntfs/parser"
)
