package main

import "io/fs"

// mustSub returns a sub-filesystem of an embedded FS; the directory is
// fixed at compile time, so failure is a programming error.
func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
