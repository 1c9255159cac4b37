package main

import "testing"

// Exit statuses: 2 for every command line the dispatcher or a command
// refuses, 0 for help and the version.
func TestExitStatus(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"scan", "-frobnicate"}, 2},
		{[]string{"scan"}, 2},
		{[]string{"analyze", "-frobnicate"}, 2},
		{[]string{"analyze"}, 2},
		{[]string{"-h"}, 0},
		{[]string{"scan", "-h"}, 0},
		{[]string{"version"}, 0},
	} {
		if got := run(tt.args); got != tt.want {
			t.Errorf("mxsurvey %q: exit %d, want %d", tt.args, got, tt.want)
		}
	}
}
