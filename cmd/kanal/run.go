package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// defaultServer is where kanal looks for kanald when nothing says otherwise:
// the address "go run ./cmd/kanald" listens on.
const defaultServer = "http://127.0.0.1:8080"

// usageError is a mistake in how kanal was called; it exits with status 2.
type usageError struct {
	cmd string // the command whose help to point at; "" for kanal itself
	msg string
}

func (e *usageError) Error() string {
	if e.cmd == "" {
		return e.msg
	}
	return e.cmd + ": " + e.msg
}

// command is one leaf of kanal's command tree, such as "device enroll".
type command struct {
	name    string // words after "kanal"
	args    string // synopsis after the name
	summary string // one line for "kanal help"
	help    string // paragraphs for "kanal help <name>"
	// nargs is the number of positional arguments; -1 means any.
	nargs int
	flags func(fs *flag.FlagSet, o *opts)
	run   func(ctx context.Context, c *cli, o *opts, args []string) error
}

// opts holds every flag any command defines; each command registers only
// its own on its flag set.
type opts struct {
	server     string
	name       string
	keyType    string
	token      string
	tokenFile  string
	kind       string
	role       string
	deviceOnly bool
	newKey     string
	ca         bool
	orgCRL     string
	verbose    bool // -v: account ids next to names
	confirmID  string
}

// cli is one invocation's world: the environment and streams run was given.
type cli struct {
	env    func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
	// quietAlerts: the command lists the monitor's alerts itself, so
	// opening the key store does not print them.
	quietAlerts bool
	// verbose is -v: account ids next to names (names.go).
	verbose bool
}

func commands() []*command {
	var cmds []*command
	cmds = append(cmds, accountCommands()...)
	cmds = append(cmds, deviceCommands()...)
	cmds = append(cmds, adminCommands()...)
	cmds = append(cmds, directoryCommands()...)
	cmds = append(cmds, chatCommands()...)
	cmds = append(cmds, profileCommands()...)
	cmds = append(cmds, groupCommands()...)
	cmds = append(cmds, broadcastCommands()...)
	cmds = append(cmds, attachmentCommands()...)
	cmds = append(cmds, pollCommands()...)
	cmds = append(cmds, pushCommands()...)
	cmds = append(cmds, orgCommands()...)
	cmds = append(cmds, offerCommands()...)
	cmds = append(cmds, vaultCommands()...)
	cmds = append(cmds, templateCommands()...)
	cmds = append(cmds, payCommands()...)
	cmds = append(cmds, appCommands()...)
	cmds = append(cmds, formCommands()...)
	cmds = append(cmds, caseCommands()...)
	cmds = append(cmds, surveyCommands()...)
	cmds = append(cmds, witnessCommands()...)
	cmds = append(cmds, trustCommands()...)
	cmds = append(cmds, alertCommands()...)
	cmds = append(cmds, eidCommands()...)
	return cmds
}

// run is kanal: it parses args, runs one command and returns its error.
func run(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{env: env, stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	var o opts
	global := flag.NewFlagSet("kanal", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	serverFlag(global, &o)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c.help(nil)
		}
		return &usageError{msg: err.Error()}
	}
	args = global.Args()
	if len(args) == 0 {
		c.help(nil)
		return &usageError{msg: "no command given"}
	}
	if args[0] == "help" {
		return c.help(args[1:])
	}

	cmd, rest := lookup(args)
	if cmd == nil {
		if group := groupOf(args); group != "" {
			if n := len(strings.Fields(group)); len(args) > n && isHelp(args[n]) {
				return c.help(strings.Fields(group))
			}
			if len(args) == len(strings.Fields(group)) {
				return &usageError{cmd: group, msg: "missing subcommand"}
			}
			return &usageError{cmd: group, msg: fmt.Sprintf("unknown subcommand %q", args[len(strings.Fields(group))])}
		}
		return &usageError{msg: fmt.Sprintf("unknown command %q", args[0])}
	}
	c.quietAlerts = strings.HasPrefix(cmd.name, "alerts")
	fs := flag.NewFlagSet("kanal "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	serverFlag(fs, &o)
	if cmd.flags != nil {
		cmd.flags(fs, &o)
	}
	positional, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c.help(strings.Fields(cmd.name))
		}
		return &usageError{cmd: cmd.name, msg: err.Error()}
	}
	if cmd.nargs >= 0 && len(positional) != cmd.nargs {
		return &usageError{cmd: cmd.name, msg: fmt.Sprintf("usage: kanal %s %s", cmd.name, cmd.args)}
	}
	c.verbose = o.verbose
	if err := cmd.run(ctx, c, &o, positional); err != nil {
		var u *usageError
		if errors.As(err, &u) {
			return err
		}
		return &shownError{cmd: cmd.name, err: err, verbose: o.verbose}
	}
	return nil
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// parseInterspersed parses flags wherever they stand among the arguments,
// so that "kanal device revoke ID --server URL" works; after "--" every
// argument is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		// flag stops at the first non-flag, or after consuming "--".
		consumedDashes := len(args) > fs.NArg() && args[len(args)-fs.NArg()-1] == "--"
		args = fs.Args()
		if consumedDashes {
			return append(positional, args...), nil
		}
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

func serverFlag(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.server, "server", o.server, "kanald `URL` (default $KANAL_SERVER, the key store's server, or "+defaultServer+")")
	fs.BoolVar(&o.verbose, "v", o.verbose, "account ids next to names, and an error's technical chain")
}

// lookup finds the command whose name is the longest prefix of args.
func lookup(args []string) (*command, []string) {
	var best *command
	bestLen := 0
	for _, cmd := range commands() {
		words := strings.Fields(cmd.name)
		if len(words) <= len(args) && len(words) > bestLen && strings.Join(args[:len(words)], " ") == cmd.name {
			best, bestLen = cmd, len(words)
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, args[bestLen:]
}

// groupOf returns the longest command group ("device", "admin org member")
// that args start with, or "".
func groupOf(args []string) string {
	group := ""
	for _, cmd := range commands() {
		words := strings.Fields(cmd.name)
		for n := len(words) - 1; n > 0; n-- {
			g := strings.Join(words[:n], " ")
			if n <= len(args) && strings.Join(args[:n], " ") == g && len(g) > len(group) {
				group = g
			}
		}
	}
	return group
}

// help prints the command list, a group's commands, or one command's help.
func (c *cli) help(topic []string) error {
	w := c.stdout
	if len(topic) == 0 {
		fmt.Fprint(w, `kanal is the command-line client for a kanal server.

Usage: kanal [--server URL] [-v] <command> [arguments]

Commands:
`)
		printCommands(w, commands())
		fmt.Fprint(w, `
Global flags (before or after the command):
  --server URL          kanald address
  -v                    account ids next to names, and an error's technical chain

Environment:
  KANAL_SERVER          kanald address (default `+defaultServer+`)
  KANAL_HOME            where the key store lives (default: the user config directory/kanal)
  KANAL_PASSPHRASE      the key store's passphrase (otherwise asked on the terminal)
  KANAL_PASSWORD        the account password for password and login (otherwise asked)
  KANAL_CURRENT_PASSWORD  the password being replaced, when changing it while logged in
  KANAL_CA_FINGERPRINT  the deployment CA's SHA-256 as the city publishes it; enrolment refuses any other CA
  KANAL_OPERATOR_TOKEN  the operator token for kanal admin (or --token)
  KANAL_OPERATOR_TOKEN_FILE  a file (mode 0600) holding it, e.g. kanal-data/operator-token (or --token-file)

A first session:
  kanal register alice@example.org     # a code arrives by e-mail
  kanal verify 12345678
  kanal password
  kanal device enroll
  kanal login
  kanal whoami

Run 'kanal help <command>' for a command's details.
`)
		return nil
	}
	name := strings.Join(topic, " ")
	if cmd, rest := lookup(topic); cmd != nil && len(rest) == 0 {
		fmt.Fprintf(w, "Usage: kanal %s %s\n\n%s\n", cmd.name, cmd.args, cmd.summary)
		if cmd.help != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.help))
		}
		fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		var o opts
		serverFlag(fs, &o)
		if cmd.flags != nil {
			cmd.flags(fs, &o)
		}
		fmt.Fprintf(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		var sub []*command
		for _, other := range commands() {
			if strings.HasPrefix(other.name, cmd.name+" ") {
				sub = append(sub, other)
			}
		}
		if len(sub) > 0 {
			fmt.Fprintf(w, "\nSubcommands:\n")
			printCommands(w, sub)
		}
		return nil
	}
	var in []*command
	for _, cmd := range commands() {
		if strings.HasPrefix(cmd.name+" ", name+" ") {
			in = append(in, cmd)
		}
	}
	if len(in) == 0 {
		return &usageError{msg: fmt.Sprintf("help: unknown command %q", name)}
	}
	fmt.Fprintf(w, "Usage: kanal %s <subcommand>\n\nSubcommands:\n", name)
	printCommands(w, in)
	return nil
}

// printCommands lists commands with their summaries in a column, wrapped
// to fit an 80-column terminal: a usage too wide for the column puts its
// summary on the next line.
func printCommands(w io.Writer, cmds []*command) {
	const widest, width = 30, 80
	col := 0
	for _, cmd := range cmds {
		if n := utf8.RuneCountInString(usageLine(cmd)); n > col && n <= widest {
			col = n
		}
	}
	indent := strings.Repeat(" ", 2+col+2)
	for _, cmd := range cmds {
		usage := usageLine(cmd)
		lines := wrapWords(cmd.summary, width-len(indent))
		if n := utf8.RuneCountInString(usage); n <= col {
			fmt.Fprintf(w, "  %s%s  %s\n", usage, strings.Repeat(" ", col-n), lines[0])
			lines = lines[1:]
		} else {
			fmt.Fprintf(w, "  %s\n", usage)
		}
		for _, l := range lines {
			fmt.Fprintf(w, "%s%s\n", indent, l)
		}
	}
}

func usageLine(cmd *command) string { return strings.TrimSpace(cmd.name + " " + cmd.args) }

// wrapWords breaks s into lines of at most width runes, at spaces; a word
// longer than width stands on a line of its own.
func wrapWords(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	return append(lines, line)
}
