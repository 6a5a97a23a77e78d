//go:build !linux

package process

// Helpers reports no helpers off Linux.
func (b *Backend) Helpers() (ready, target int) { return 0, 0 }
