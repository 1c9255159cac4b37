//go:build !profiled

package main

// profile runs the command; a build with -tags profiled wraps it in
// runtime/pprof instead (profiled.go).
func profile(args []string, run func([]string) int) int { return run(args) }
