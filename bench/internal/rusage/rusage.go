// Package rusage reads the CPU time of the running process, which the
// reference loops report per operation next to the scanner's.
package rusage

import "syscall"

// CPU returns the user and system CPU seconds used by this process so far.
func CPU() (user, sys float64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail for RUSAGE_SELF
	return seconds(ru.Utime), seconds(ru.Stime)
}

func seconds(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
