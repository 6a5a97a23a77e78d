package process

// Helpers reports the pool of pre-started helpers: how many are ready to
// take a start, and how many the pool keeps (0: no pool).
func (b *Backend) Helpers() (ready, target int) {
	p := &b.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, p.size
	}
	return len(p.idle), p.size
}
