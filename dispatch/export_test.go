package dispatch

// WaitingJobs returns how many of r's batch jobs wait for rows to be
// handed to them (handoff.go), for tests that must act while one waits.
func WaitingJobs(r *Relay) int {
	r.handoffs.mu.Lock()
	defer r.handoffs.mu.Unlock()
	return len(r.handoffs.open)
}
