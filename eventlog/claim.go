package eventlog

import (
	"fmt"
	"sync"
)

// claims are names held exclusively for the life of a Log. The file lock
// already keeps other processes out of an open journal, so exclusivity
// within this process is all that is left to enforce.
type claims struct {
	mu   sync.Mutex
	held map[string]struct{}
}

// Claim takes name exclusively until release is called, or fails with
// ErrClaimed while another holder has it. flowrt uses it so that only one
// live instance of a consumer name runs per journal. release is idempotent.
func (l *Log) Claim(name string) (release func(), err error) {
	if l.isClosed() {
		return nil, ErrClosed
	}
	l.claims.mu.Lock()
	defer l.claims.mu.Unlock()
	if _, ok := l.claims.held[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrClaimed, name)
	}
	if l.claims.held == nil {
		l.claims.held = make(map[string]struct{})
	}
	l.claims.held[name] = struct{}{}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.claims.mu.Lock()
			delete(l.claims.held, name)
			l.claims.mu.Unlock()
		})
	}, nil
}
