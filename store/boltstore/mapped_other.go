//go:build !linux

package boltstore

import "errors"

// Only Linux has the bound on mapped pages: Open does not start its loop
// elsewhere.
const canBoundMapped = false

func fileResident() (int64, error) { return 0, errors.ErrUnsupported }

func dropPages(uintptr, int64) error { return errors.ErrUnsupported }
