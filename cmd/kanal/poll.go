package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// Polls in a chat: opened, voted on and closed with end-to-end messages;
// each device tallies what it received, the server never sees a poll.
// A device counts a vote only from the poll's own conversation, one
// ballot per account (the newest wins), and takes a close only from the
// account that opened the poll.

const pollsName = "cli/polls"

// pollState is one poll as this device knows it.
type pollState struct {
	ID           string           `json:"id"`
	Conversation string           `json:"conv"`
	Reply        string           `json:"reply"`
	ReplyOrg     string           `json:"reply_org,omitempty"`
	Creator      string           `json:"creator"`
	Question     string           `json:"question"`
	Options      []string         `json:"options"`
	Multiple     bool             `json:"multiple,omitempty"`
	ClosesAt     time.Time        `json:"closes_at,omitzero"`
	Closed       bool             `json:"closed,omitempty"`
	Votes        map[string][]int `json:"votes"`
	At           time.Time        `json:"at"`
}

func (p *pollState) open(at time.Time) bool {
	return !p.Closed && (p.ClosesAt.IsZero() || at.Before(p.ClosesAt))
}

func loadPolls(s mclient.Store) (map[string]*pollState, error) {
	polls := map[string]*pollState{}
	b, err := s.Get(pollsName)
	if errors.Is(err, mclient.ErrNotFound) {
		return polls, nil
	} else if err != nil {
		return nil, err
	}
	return polls, json.Unmarshal(b, &polls)
}

// applyPoll records a poll message from account in conversation conv. It
// returns a note when the message was not counted, and why.
func (s *chatSession) applyPoll(b *kind.PollBody, conv, account, reply, replyOrg string, at time.Time) (string, error) {
	polls, err := loadPolls(s.hist.store)
	if err != nil {
		return "", err
	}
	p := polls[b.PollID]
	note := ""
	switch {
	case b.Op == "open" && p == nil:
		polls[b.PollID] = &pollState{ID: b.PollID, Conversation: conv, Reply: reply, ReplyOrg: replyOrg, Creator: account,
			Question: b.Question, Options: b.Options, Multiple: b.Multiple, ClosesAt: b.ClosesAt, Votes: map[string][]int{}, At: at}
	case b.Op == "open":
		if p.Creator != account || p.Conversation != conv {
			note = "not counted: a second poll under the id of poll " + b.PollID
		}
	case p == nil:
		note = "not counted: a " + b.Op + " for poll " + b.PollID + ", which this device has not seen opened"
	case p.Conversation != conv:
		note = "not counted: a " + b.Op + " for poll " + b.PollID + " from another conversation"
	case b.Op == "vote" && !p.open(at):
		note = "not counted: a vote after poll " + b.PollID + " closed"
	case b.Op == "vote" && !p.Multiple && len(b.Choices) != 1:
		note = "not counted: several choices in poll " + b.PollID + ", which takes one"
	case b.Op == "vote":
		for _, ch := range b.Choices {
			if ch >= len(p.Options) {
				note = "not counted: a vote for an option poll " + b.PollID + " does not have"
			}
		}
		if note == "" {
			p.Votes[account] = b.Choices
		}
	case b.Op == "close" && account != p.Creator:
		note = "not counted: " + account + " tried to close poll " + b.PollID + ", which " + p.Creator + " opened"
	case b.Op == "close":
		p.Closed = true
	}
	if note != "" {
		return note, nil
	}
	if len(polls) > historyLimit {
		// Forget the oldest polls.
		list := make([]*pollState, 0, len(polls))
		for _, p := range polls {
			list = append(list, p)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].At.Before(list[j].At) })
		for _, p := range list[:len(list)-historyLimit] {
			delete(polls, p.ID)
		}
	}
	raw, err := json.Marshal(polls)
	if err != nil {
		return "", err
	}
	return "", s.hist.store.Put(pollsName, raw)
}

// pollLine is one line for a poll message in a chat.
func (s *chatSession) pollLine(b *kind.PollBody, conv, account string) string {
	switch b.Op {
	case "open":
		var opts []string
		for i, o := range b.Options {
			opts = append(opts, fmt.Sprintf("%d) %s", i+1, o))
		}
		return fmt.Sprintf("poll: %s %s — kanal poll vote %s <number>", b.Question, strings.Join(opts, " "), b.PollID)
	case "vote":
		return "voted in poll " + b.PollID
	default:
		return "closed poll " + b.PollID + " — kanal poll results " + b.PollID
	}
}

type pollOpts struct {
	org      string
	multiple bool
}

func pollCommands() []*command {
	var po pollOpts
	return []*command{
		{
			name: "poll create", args: "[--multiple] [--org ORG] <account|org|group> <question> <option> <option>…", nargs: -1,
			summary: "open a poll in a conversation (prints its id)",
			help: `Sends a poll with 2 to 12 options to the conversation. Everyone in it votes
with 'kanal poll vote'; each device counts the votes it receives, the server
never sees the poll. Only you can close it.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&po.multiple, "multiple", false, "allow choosing several options")
				fs.StringVar(&po.org, "org", "", "open it as this `organisation` (you must be one of its agents)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return pollCreate(ctx, c, o, &po, args)
			},
		},
		{
			name: "poll vote", args: "<poll-id> <option>…", nargs: -1,
			summary: "vote in a poll: options by number (1, 2, …) or by their text",
			help:    "A new vote replaces your earlier one. Several options only in a poll opened with --multiple.",
			run:     pollVote,
		},
		{
			name: "poll close", args: "<poll-id>", nargs: 1,
			summary: "close a poll you opened; no votes count after it",
			run:     pollClose,
		},
		{
			name: "poll results", args: "<poll-id>", nargs: 1,
			summary: "show a poll's votes as this device counted them (fetches the inbox first)",
			run:     pollResults,
		},
		{
			name: "poll list", nargs: 0,
			summary: "list the polls this device knows",
			run:     pollList,
		},
	}
}

func pollCreate(ctx context.Context, c *cli, o *opts, po *pollOpts, args []string) error {
	if len(args) < 4 {
		return &usageError{cmd: "poll create", msg: "a poll needs a conversation, a question and at least two options"}
	}
	to, err := parsePeer(args[0], po.org)
	if err != nil {
		return &usageError{cmd: "poll create", msg: err.Error()}
	}
	body := &kind.PollBody{Op: "open", PollID: "poll-" + newKey(), Question: args[1], Options: args[2:], Multiple: po.multiple}
	if err := body.Validate(); err != nil {
		return &usageError{cmd: "poll create", msg: kindProblem(err)}
	}
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	if _, err := s.sendBody(ctx, c, to, body, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Opened a poll with %s.\n", plural(len(body.Options), "option"))
	fmt.Fprintln(c.stdout, body.PollID)
	return nil
}

// kindProblem is a message-kind validation error without its package prefix.
func kindProblem(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// knownPoll fetches the inbox and returns the poll.
func (s *chatSession) knownPoll(ctx context.Context, c *cli, id string) (*pollState, error) {
	if err := s.fetch(ctx, c, 0, func(entry) {}); err != nil {
		return nil, err
	}
	polls, err := loadPolls(s.hist.store)
	if err != nil {
		return nil, err
	}
	p := polls[id]
	if p == nil {
		return nil, fmt.Errorf("no poll %s has reached this device: 'kanal poll list' shows those that have", id)
	}
	return p, nil
}

func pollVote(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) < 2 {
		return &usageError{cmd: "poll vote", msg: "usage: kanal poll vote <poll-id> <option>…"}
	}
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	p, err := s.knownPoll(ctx, c, args[0])
	if err != nil {
		return err
	}
	if !p.open(c.now()) {
		return fmt.Errorf("poll %s is closed", p.ID)
	}
	var choices []int
	for _, a := range args[1:] {
		ch := -1
		if n, err := strconv.Atoi(a); err == nil && n >= 1 && n <= len(p.Options) {
			ch = n - 1
		}
		for i, opt := range p.Options {
			if ch < 0 && strings.EqualFold(strings.TrimSpace(opt), strings.TrimSpace(a)) {
				ch = i
			}
		}
		if ch < 0 {
			return &usageError{cmd: "poll vote", msg: fmt.Sprintf("%q is not an option of this poll: give 1 to %d or an option's text", a, len(p.Options))}
		}
		if contains(intStrings(choices), strconv.Itoa(ch)) {
			continue
		}
		choices = append(choices, ch)
	}
	if len(choices) > 1 && !p.Multiple {
		return &usageError{cmd: "poll vote", msg: "this poll takes one option"}
	}
	to, err := parsePeer(p.Reply, p.ReplyOrg)
	if err != nil {
		return err
	}
	if _, err := s.sendBody(ctx, c, to, &kind.PollBody{Op: "vote", PollID: p.ID, Choices: choices}, nil); err != nil {
		return err
	}
	var names []string
	for _, ch := range choices {
		names = append(names, strconv.Quote(p.Options[ch]))
	}
	fmt.Fprintf(c.stdout, "Voted %s in %q.\n", strings.Join(names, " and "), p.Question)
	return nil
}

func intStrings(xs []int) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strconv.Itoa(x)
	}
	return out
}

func pollClose(ctx context.Context, c *cli, o *opts, args []string) error {
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	p, err := s.knownPoll(ctx, c, args[0])
	if err != nil {
		return err
	}
	if p.Creator != s.st.Data.AccountID {
		return fmt.Errorf("only the account that opened poll %s (%s) can close it", p.ID, p.Creator)
	}
	if p.Closed {
		fmt.Fprintf(c.stdout, "Poll %s was already closed.\n", p.ID)
		return nil
	}
	to, err := parsePeer(p.Reply, p.ReplyOrg)
	if err != nil {
		return err
	}
	if _, err := s.sendBody(ctx, c, to, &kind.PollBody{Op: "close", PollID: p.ID}, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Closed poll %q.\n", p.Question)
	return printPoll(c, p, true)
}

func pollResults(ctx context.Context, c *cli, o *opts, args []string) error {
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	p, err := s.knownPoll(ctx, c, args[0])
	if err != nil {
		return err
	}
	return printPoll(c, p, !p.open(c.now()))
}

func printPoll(c *cli, p *pollState, closed bool) error {
	counts := make([]int, len(p.Options))
	for _, chs := range p.Votes {
		for _, ch := range chs {
			if ch < len(counts) {
				counts[ch]++
			}
		}
	}
	state := "open"
	if closed {
		state = "closed"
	}
	fmt.Fprintf(c.stdout, "%s (%s, %s, opened by %s)\n", p.Question, state, plural(len(p.Votes), "voter"), p.Creator)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for i, o := range p.Options {
		fmt.Fprintf(tw, "  %d) %s\t%s\t%s\n", i+1, o, plural(counts[i], "vote"), strings.Repeat("█", counts[i]))
	}
	return tw.Flush()
}

func pollList(ctx context.Context, c *cli, o *opts, _ []string) error {
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	if err := s.fetch(ctx, c, 0, func(entry) {}); err != nil {
		return err
	}
	polls, err := loadPolls(s.hist.store)
	if err != nil {
		return err
	}
	if len(polls) == 0 {
		fmt.Fprintln(c.stdout, "no polls yet")
		return nil
	}
	list := make([]*pollState, 0, len(polls))
	for _, p := range polls {
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].At.After(list[j].At) })
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLL\tIN\tSTATE\tVOTERS\tQUESTION")
	for _, p := range list {
		state := "open"
		if !p.open(c.now()) {
			state = "closed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.ID, p.Reply, state, len(p.Votes), p.Question)
	}
	return tw.Flush()
}
