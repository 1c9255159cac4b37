//go:build race

package lab

// raceEnabled lets the start-time measurement skip itself under -race, where
// it would only measure the detector.
const raceEnabled = true
