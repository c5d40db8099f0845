// Package bench holds Pulse's end-to-end benchmark harnesses; the Go
// micro-benchmarks live beside the code they measure. Run them with
// bench/run.sh, which writes bench/results/.
package bench
