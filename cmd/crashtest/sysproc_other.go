//go:build !linux

package main

import "syscall"

// childAttr: outside Linux there is no parent-death signal; the harness
// relies on its deferred kill alone.
func childAttr() *syscall.SysProcAttr { return nil }
