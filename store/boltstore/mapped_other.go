//go:build !linux

package boltstore

import "errors"

// Only Linux has the bound on mapped pages; elsewhere it never triggers.
func fileResident() (int64, error) { return 0, errors.ErrUnsupported }

func dropPages(uintptr, int64) error { return errors.ErrUnsupported }
