package deploy

import "context"

// ConnectError reports a host that could not be reached: no connection,
// refused authentication, or a refused host key. Nothing was changed there.
type ConnectError struct {
	Host string
	Err  error
}

func (e *ConnectError) Error() string { return e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }

// connectStep opens the connection to each host, no_release hosts too
// (their hooks need it); its Finish closes it, last of all, after the
// lock is released.
type connectStep struct {
	everyHost
	r *run
}

func (connectStep) Name() string { return "connect" }

func (s connectStep) Run(ctx context.Context, t *Target) error {
	ex, err := s.r.opts.Dial(ctx, t.Host)
	if err != nil {
		return &ConnectError{Host: t.Name(), Err: err}
	}
	t.Exec = ex
	return nil
}

func (connectStep) Finish(_ context.Context, t *Target) error { return t.Exec.Close() }
