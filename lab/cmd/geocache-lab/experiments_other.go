//go:build !linux

package main

import (
	"fmt"
	"io"
)

// The page-fault experiments use Linux interfaces (fadvise, mincore,
// FUSE mounts); elsewhere they say so.
func coldstart(_ []string, _, stderr io.Writer) int   { return linuxOnly("coldstart", stderr) }
func soak(_ []string, _, stderr io.Writer) int        { return linuxOnly("soak", stderr) }
func serveSlowfs(_ []string, _, stderr io.Writer) int { return linuxOnly("slowfs", stderr) }

func linuxOnly(cmd string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "geocache-lab %s: Linux only\n", cmd)
	return 2
}
