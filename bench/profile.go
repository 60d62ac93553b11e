//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
)

// profiler writes one CPU and one allocation profile per careplan phase it
// wraps (FILE.reads, FILE.writes, …), so the read path and the write path can
// be studied apart. It is only used with the careplan server in-process:
// the profiles then also hold the bench's own client, which is the same for
// every server and shows up under grpc's client-side frames.
type profiler struct {
	cpu, mem string
	cpuFiles []string
}

// around runs fn with profiling on, if any was asked for and phase names
// a careplan phase.
func (p *profiler) around(phase string, fn func()) error {
	if phase == "" || (p.cpu == "" && p.mem == "") {
		fn()
		return nil
	}
	if p.cpu != "" {
		name := phaseFile(p.cpu, phase)
		f, err := os.Create(name)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		p.cpuFiles = append(p.cpuFiles, name)
	}
	fn()
	if p.cpu != "" {
		pprof.StopCPUProfile()
	}
	if p.mem != "" {
		// The allocs profile counts from the start of the process; compare
		// phases with `go tool pprof -diff_base FILE.reads FILE.writes`.
		runtime.GC()
		f, err := os.Create(phaseFile(p.mem, phase))
		if err != nil {
			return err
		}
		defer f.Close()
		return pprof.Lookup("allocs").WriteTo(f, 0)
	}
	return nil
}

// phaseFile puts the phase before the extension: cpu.out → cpu.reads.out.
func phaseFile(base, phase string) string {
	ext := filepath.Ext(base)
	return strings.TrimSuffix(base, ext) + "." + phase + ext
}

// printTop prints the 15 heaviest functions of each CPU profile.
func (p *profiler) printTop(w io.Writer) {
	for _, f := range p.cpuFiles {
		fmt.Fprintf(w, "\n== CPU profile %s: top 15 (go tool pprof -top) ==\n", f)
		cmd := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", f)
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(w, "go tool pprof: %v\n", err)
		}
	}
}
