package dispatch

// WaitingJobs returns how many of r's batch jobs wait for rows to be
// handed to them (handoff.go), for tests that must act while one waits.
func WaitingJobs(r *Relay) int {
	r.handoffs.mu.Lock()
	defer r.handoffs.mu.Unlock()
	return len(r.handoffs.open)
}

// EmptyHandOffs returns how many times admission took a waiting job and
// had no row for it.
func EmptyHandOffs(r *Relay) int {
	r.handoffs.mu.Lock()
	defer r.handoffs.mu.Unlock()
	return r.handoffs.empty
}
