package surveys

import "time"

// Polls in chat. A poll is opened, voted on and closed with end-to-end
// messages of the poll kind in a conversation; the server never sees a
// vote. Each client counts what it has received with TallyPoll, so every
// member who received the same messages sees the same count.

// PollVote is one received vote: who cast it (the sender's account, which
// the channel authenticates) and the chosen option indexes.
type PollVote struct {
	Voter   string
	Choices []int
	SentAt  time.Time
}

// PollCount is a poll's count on one client.
type PollCount struct {
	Counts  []int // per option
	Voters  int
	Ignored int // votes out of range, too many choices, or after closing
}

// TallyPoll counts votes for a poll with options options: each voter's
// latest vote (by SentAt, the sender's signed timestamp) replaces earlier
// ones; a vote with a choice out of range, with several choices when the
// poll is not multiple, or sent after closesAt (if set) is ignored.
func TallyPoll(options int, multiple bool, closesAt time.Time, votes []PollVote) PollCount {
	latest := map[string]PollVote{}
	var c PollCount
	c.Counts = make([]int, options)
	for _, v := range votes {
		if !validPollVote(options, multiple, closesAt, v) {
			c.Ignored++
			continue
		}
		if old, ok := latest[v.Voter]; ok && !v.SentAt.After(old.SentAt) {
			continue
		}
		latest[v.Voter] = v
	}
	for _, v := range latest {
		for _, ch := range v.Choices {
			c.Counts[ch]++
		}
	}
	c.Voters = len(latest)
	return c
}

func validPollVote(options int, multiple bool, closesAt time.Time, v PollVote) bool {
	if v.Voter == "" || len(v.Choices) == 0 || (!multiple && len(v.Choices) > 1) {
		return false
	}
	if !closesAt.IsZero() && v.SentAt.After(closesAt) {
		return false
	}
	seen := map[int]bool{}
	for _, ch := range v.Choices {
		if ch < 0 || ch >= options || seen[ch] {
			return false
		}
		seen[ch] = true
	}
	return true
}
