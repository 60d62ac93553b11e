package main

import "syscall"

// childAttr asks the kernel to SIGKILL the server if the harness dies
// without running its deferred cleanup (for example when `go test` times
// out), so no server is left holding a port and the data file. Pdeathsig
// fires when the creating OS thread exits; Go only retires threads whose
// goroutine exits while locked to them, which the harness never does.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
