package boltstore

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// canBoundMapped says whether Options.MappedBytes can act here.
const canBoundMapped = true

// fileResident is the process's file-backed (and shared) resident memory:
// the third field of /proc/self/statm, in pages.
func fileResident() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, errors.New("unexpected /proc/self/statm format")
	}
	pages, err := strconv.ParseInt(f[2], 10, 64)
	return pages * int64(os.Getpagesize()), err
}

// dropPages unmaps the pages of a read-only shared file mapping; the page
// cache keeps them.
func dropPages(addr uintptr, n int64) error {
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, addr, uintptr(n), syscall.MADV_DONTNEED); e != 0 {
		return e
	}
	return nil
}
