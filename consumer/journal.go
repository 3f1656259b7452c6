package consumer

import "github.com/flowrt/flowrt/eventlog"

// Journal is what a Reader needs of a journal. *eventlog.Log implements it.
//
// Reading goes through Subscribe. Progress (the ack floor, retry state and
// dead letters) is written with Update, in the journal's own transactions:
// that is the single-file journal's transactional capability, which a
// future journal without one would provide through its own Journal.
type Journal interface {
	Subscribe(stream string, from eventlog.Position) (*eventlog.Subscription, error)
	Update(fn func(*eventlog.Tx) error) error
	View(fn func(*eventlog.Tx) error) error
}

// claimer is the optional capability of holding a name exclusively within
// the process; the file lock keeps other processes out.
type claimer interface {
	Claim(name string) (release func(), err error)
}

func claimName(stream, name string) string { return "consumer/" + stream + "/" + name }
