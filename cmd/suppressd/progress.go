package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress prints a status line while a long command runs: redrawn in
// place on a terminal (filter, import), or a new line each period in logs
// (rebuild). line is called from the printer's goroutine.
type progress struct {
	w      io.Writer
	every  time.Duration
	redraw bool
	line   func() string

	stop, done chan struct{}
}

// startProgress starts printing; call the returned progress's end.
func startProgress(w io.Writer, every time.Duration, redraw bool, line func() string) *progress {
	p := &progress{w: w, every: every, redraw: redraw, line: line, stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			if p.redraw {
				fmt.Fprint(p.w, "\r\033[K")
			}
			return
		case <-t.C:
			if p.redraw {
				fmt.Fprintf(p.w, "\r%s\033[K", p.line())
			} else {
				fmt.Fprintln(p.w, p.line())
			}
		}
	}
}

// end stops the printer (a nil progress is a no-op) and returns once it
// is gone, its line erased on a terminal.
func (p *progress) end() {
	if p == nil {
		return
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// startRedraw starts a redrawn progress line when on is set (the --progress
// flag, which defaults to stderr being a terminal); nil otherwise.
func startRedraw(w io.Writer, on bool, line func() string) *progress {
	if !on {
		return nil
	}
	return startProgress(w, 200*time.Millisecond, true, line)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
