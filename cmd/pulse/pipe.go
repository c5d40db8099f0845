package main

import (
	"errors"
	"os/signal"
	"syscall"
)

// endOnBrokenPipe lets a command that writes a stream to standard output
// end normally when its reader goes away (pulse gen | head): a write to the
// closed pipe then fails with EPIPE instead of the SIGPIPE that kills a Go
// program writing to standard output. The command stops writing, and exits
// 0 without a message (brokenPipe).
func endOnBrokenPipe() { signal.Ignore(syscall.SIGPIPE) }

// brokenPipe reports whether err is a write to a pipe whose reader has
// gone: the end of the output, not a failure.
func brokenPipe(err error) bool { return errors.Is(err, syscall.EPIPE) }
