package deploy

import (
	"context"
)

// Unlock removes the deploy lock on every selected host and returns who held
// it, per host.
func Unlock(ctx context.Context, opts Options) (map[string]*LockOwner, error) {
	r := newRun(ctx, opts)
	holders := make([]*LockOwner, len(r.targets))
	unlock := stepFunc{name: "unlock", fn: func(ctx context.Context, t *Target) error {
		holders[t.Index] = t.State.Lock
		return removeLock(ctx, t.Exec, r.layout)
	}}
	err := r.pipeline([]Step{perHost(connectStep{r: r}), perHost(inspectStep{r: r}), perHost(unlock)})
	out := map[string]*LockOwner{}
	for _, t := range r.targets {
		out[t.Name()] = holders[t.Index]
	}
	return out, err
}
