package push

// Recovered is closed when Run's recovery scan is over. Tests that write
// envelopes right after starting Run wait for it: a scan that reads the
// subscriptions and the newest envelopes after they are written queues
// every subscribed device, live or not, and the queue is then not the one
// the test set up.
func (s *Service) Recovered() <-chan struct{} { return s.recovered }
