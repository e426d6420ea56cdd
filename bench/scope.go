package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// scope is the testing.TB that testutil.StartFleet needs, outside of a
// test. It keeps the cleanups the fleet registers (stop every sshd, remove
// the fleet's directories) and runs them, last first, when the benchmark is
// done with the fleet, or when it is interrupted.
//
// Fatalf and Skipf panic with a fatal value that catchFatal turns into the
// run's error: a missing prerequisite is a failure of the benchmark, never
// a skip (TestQuickRun hands it to testutil.Require).
type scope struct {
	// testing.TB is nil: testutil calls only the methods defined below,
	// and any other call would be a bug to hear about at once.
	testing.TB
	name string

	mu       sync.Mutex
	cleanups []func()
	running  sync.WaitGroup // cleanups being run
	errors   []string
}

// fatal is what Fatalf and Skipf panic with.
type fatal struct {
	msg          string
	prerequisite bool // from Skipf: something to install, not a failure of the run
}

func (f fatal) Error() string {
	if f.prerequisite {
		return "missing prerequisite: " + f.msg
	}
	return f.msg
}

// catchFatal, deferred, ends the panic of a Fatalf or Skipf and sets *err
// to it; any other panic goes on.
func catchFatal(err *error) {
	if r := recover(); r != nil {
		f, ok := r.(fatal)
		if !ok {
			panic(r)
		}
		*err = f
	}
}

var (
	openScopesMu sync.Mutex
	openScopes   = map[*scope]bool{}
)

func newScope(name string) *scope {
	s := &scope{name: name}
	openScopesMu.Lock()
	openScopes[s] = true
	openScopesMu.Unlock()
	return s
}

func (s *scope) Helper()      {}
func (s *scope) Name() string { return s.name }

func (s *scope) Fatalf(format string, args ...any) {
	panic(fatal{msg: fmt.Sprintf(format, args...)})
}

func (s *scope) Skipf(format string, args ...any) {
	panic(fatal{msg: fmt.Sprintf(format, args...), prerequisite: true})
}

func (s *scope) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stderr, "bench: %s: %s\n", s.name, msg)
	s.mu.Lock()
	s.errors = append(s.errors, msg)
	s.mu.Unlock()
}

func (s *scope) Failed() bool { return s.Err() != nil }

// Err is every error reported with Errorf, joined; nil if none was.
func (s *scope) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, msg := range s.errors {
		errs = append(errs, fmt.Errorf("%s: %s", s.name, msg))
	}
	return errors.Join(errs...)
}

func (s *scope) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s: %s\n", s.name, fmt.Sprintf(format, args...))
}

// TempDir makes a directory that close removes.
func (s *scope) TempDir() string {
	dir, err := os.MkdirTemp("", "slipway-bench-")
	if err != nil {
		s.Fatalf("TempDir: %v", err)
	}
	s.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (s *scope) Cleanup(f func()) {
	s.mu.Lock()
	s.cleanups = append(s.cleanups, f)
	s.mu.Unlock()
}

// close runs the cleanups, last registered first, each once, and returns
// when all have run, also those another goroutine is running: it is safe
// to call from the signal handler while main is closing the scope too.
func (s *scope) close() {
	for {
		s.mu.Lock()
		n := len(s.cleanups)
		if n == 0 {
			s.mu.Unlock()
			break
		}
		f := s.cleanups[n-1]
		s.cleanups = s.cleanups[:n-1]
		s.running.Add(1)
		s.mu.Unlock()
		func() {
			defer s.running.Done()
			defer func() {
				if r := recover(); r != nil {
					fmt.Fprintf(os.Stderr, "bench: %s: cleanup: %v\n", s.name, r)
				}
			}()
			f()
		}()
	}
	s.running.Wait()
	openScopesMu.Lock()
	delete(openScopes, s)
	openScopesMu.Unlock()
}

// closeAllScopes closes every scope still open; they do not depend on
// each other, so the order does not matter.
func closeAllScopes() {
	openScopesMu.Lock()
	var all []*scope
	for s := range openScopes {
		all = append(all, s)
	}
	openScopesMu.Unlock()
	for _, s := range all {
		s.close()
	}
}
