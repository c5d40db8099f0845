package webhook

// Snoozes returns the number of accounts snoozed now.
func (s *Sink) Snoozes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, n := s.cfg.Now(), 0
	for _, until := range s.snoozed {
		if now.Before(until) {
			n++
		}
	}
	return n
}
