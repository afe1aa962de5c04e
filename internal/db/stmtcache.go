package db

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"slices"
)

// SQLite statement cache. database/sql prepares and finalizes a statement
// for every Exec and Query with arguments, and modernc.org/sqlite has no
// cache of its own: SQLite parses the SQL text each time. On the message
// path that parsing was about a sixth of the CPU of a send (sqlite3Parser in
// the profile of messaging's BenchmarkSend). Each connection here keeps
// its prepared statements by SQL text and runs them again with new
// arguments. PostgreSQL needs none of this: pgx caches statements itself.

// maxCachedStmts bounds the statements one connection keeps; when it is
// full, one is finalized to make room.
const maxCachedStmts = 256

// stmtCacheConnector opens connections of the connector it wraps that
// cache statements.
type stmtCacheConnector struct{ driver.Connector }

func (c stmtCacheConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return newCachingConn(conn)
}

// cachingConn wraps a driver connection that implements the context
// interfaces database/sql prefers. database/sql uses a connection from one
// goroutine at a time, so the cache needs no lock.
type cachingConn struct {
	driver.Conn
	begin   driver.ConnBeginTx
	prepare driver.ConnPrepareContext
	exec    driver.ExecerContext
	query   driver.QueryerContext
	stmts   map[string]*cachedStmt
	// argBuf is where a rewritten statement's arguments are put in its
	// order, kept for the next statement: the driver binds them before
	// Exec or Query returns, and a group commit's statements carry
	// hundreds (a new slice each was a tenth of the bytes a busy node
	// allocated; docs/benchmarks.md, "Frames read into pooled buffers").
	argBuf []driver.NamedValue
}

// maxArgBuf bounds the arguments argBuf keeps between statements.
const maxArgBuf = 1024

// release gives argBuf back once the driver has bound a, the arguments
// s.args put in it.
func (c *cachingConn) release(s *cachedStmt, a []driver.NamedValue) {
	if s.order == nil || a == nil {
		return
	}
	clear(a) // keep no argument alive
	if cap(a) <= maxArgBuf {
		c.argBuf = a[:0]
	}
}

type cachedStmt struct {
	exec  driver.StmtExecContext
	query driver.StmtQueryContext
	close io.Closer
	busy  bool  // rows from it are open
	order []int // the statement's "?" in order: the argument each takes ($k is k-1); nil: not rewritten
}

var errNoContextDriver = errors.New("db: the SQLite driver lacks the context interfaces the statement cache needs")

func newCachingConn(conn driver.Conn) (*cachingConn, error) {
	c := &cachingConn{Conn: conn, stmts: map[string]*cachedStmt{}}
	var ok1, ok2, ok3, ok4 bool
	c.begin, ok1 = conn.(driver.ConnBeginTx)
	c.prepare, ok2 = conn.(driver.ConnPrepareContext)
	c.exec, ok3 = conn.(driver.ExecerContext)
	c.query, ok4 = conn.(driver.QueryerContext)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		conn.Close()
		return nil, errNoContextDriver
	}
	return c, nil
}

func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.begin.BeginTx(ctx, opts)
}

func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.prepare.PrepareContext(ctx, query)
}

// stmt returns the cached statement for query, preparing it on first use.
// Statements without arguments (migrations, scripts of several
// statements) are not cached.
func (c *cachingConn) stmt(ctx context.Context, query string) (*cachedStmt, error) {
	if s := c.stmts[query]; s != nil {
		return s, nil
	}
	text, order := positional(query)
	st, err := c.prepare.PrepareContext(ctx, text)
	if err != nil {
		return nil, err
	}
	ex, ok1 := st.(driver.StmtExecContext)
	qu, ok2 := st.(driver.StmtQueryContext)
	if !ok1 || !ok2 {
		st.Close()
		return nil, errNoContextDriver
	}
	if len(c.stmts) >= maxCachedStmts {
		for k, old := range c.stmts {
			if !old.busy {
				old.close.Close()
				delete(c.stmts, k)
				break
			}
		}
	}
	s := &cachedStmt{exec: ex, query: qu, close: st, order: order}
	c.stmts[query] = s
	return s, nil
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if len(args) == 0 {
		return c.exec.ExecContext(ctx, query, args)
	}
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	a, ok := s.args(args, c.argBuf)
	defer c.release(s, a)
	if s.busy || !ok {
		return c.exec.ExecContext(ctx, query, args)
	}
	return s.exec.ExecContext(ctx, a)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) == 0 {
		return c.query.QueryContext(ctx, query, args)
	}
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	a, ok := s.args(args, c.argBuf)
	defer c.release(s, a)
	if s.busy || !ok {
		// The same query is already open on this connection (a nested
		// read): run this one on its own statement.
		return c.query.QueryContext(ctx, query, args)
	}
	rows, err := s.query.QueryContext(ctx, a)
	if err != nil {
		return nil, err
	}
	s.busy = true
	return &cachedRows{Rows: rows, s: s}, nil
}

func (c *cachingConn) Close() error {
	for k, s := range c.stmts {
		s.close.Close()
		delete(c.stmts, k)
	}
	return c.Conn.Close()
}

// The optional interfaces database/sql asks a connection for.

func (c *cachingConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *cachingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *cachingConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// cachedRows frees its statement for the next use when closed.
type cachedRows struct {
	driver.Rows
	s *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.s.busy = false
	return err
}

// Numbered parameters. SQLite keeps the names of "$1", "$2", … in a list
// that sqlite3_bind_parameter_name searches from the start, and
// modernc.org/sqlite asks it for every parameter it binds: binding a
// statement of n parameters costs about n²/2 comparisons. A group
// commit's multi-row statements have hundreds to thousands (a broadcast's
// references: 256 rows of several columns), where this search was 12 % of
// kanald's CPU. Anonymous "?" parameters have no names to search. So a
// cached statement's "$k" are rewritten to "?", and each "?" is given the
// argument its "$k" named (a "$k" used twice becomes two "?" with the same
// argument).

// positional rewrites query's "$k" parameters to "?" and returns, for the
// n-th "?", the index of its argument (k-1). It returns query unchanged
// and nil when there is nothing to rewrite or it cannot tell: other kinds
// of parameters ("?", "?NNN", ":name", "@name", "$name") or an
// unterminated quote or comment. Quoted strings, quoted identifiers and
// comments are copied as they are.
func positional(query string) (string, []int) {
	var b []byte
	var order []int
	q := query
	for i := 0; i < len(q); {
		switch ch := q[i]; ch {
		case '\'', '"', '`':
			j := i + 1
			for {
				k := indexByte(q, j, ch)
				if k < 0 {
					return query, nil
				}
				if k+1 < len(q) && q[k+1] == ch { // a doubled quote inside
					j = k + 2
					continue
				}
				j = k + 1
				break
			}
			b = append(b, q[i:j]...)
			i = j
		case '[':
			k := indexByte(q, i+1, ']')
			if k < 0 {
				return query, nil
			}
			b = append(b, q[i:k+1]...)
			i = k + 1
		case '-':
			if i+1 < len(q) && q[i+1] == '-' {
				k := indexByte(q, i, '\n')
				if k < 0 {
					k = len(q) - 1
				}
				b = append(b, q[i:k+1]...)
				i = k + 1
				continue
			}
			b = append(b, ch)
			i++
		case '/':
			if i+1 < len(q) && q[i+1] == '*' {
				k := indexStr(q, i+2, "*/")
				if k < 0 {
					return query, nil
				}
				b = append(b, q[i:k+2]...)
				i = k + 2
				continue
			}
			b = append(b, ch)
			i++
		case '?', ':', '@':
			return query, nil
		case '$':
			j := i + 1
			n := 0
			for j < len(q) && q[j] >= '0' && q[j] <= '9' && n < 1<<20 {
				n = n*10 + int(q[j]-'0')
				j++
			}
			if j == i+1 || n < 1 || j < len(q) && (isIdent(q[j]) || q[j] == '$') {
				return query, nil // "$name", "$0", "$1x": not ours to rewrite
			}
			b = append(b, '?')
			order = append(order, n-1)
			i = j
		default:
			b = append(b, ch)
			i++
		}
	}
	if order == nil {
		return query, nil
	}
	return string(b), order
}

func indexByte(s string, from int, c byte) int {
	for i := from; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func indexStr(s string, from int, sub string) int {
	for i := from; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// args returns the arguments for the statement's "?" in order. ok is
// false when they cannot be taken from args (a named argument, or a "$k"
// past the last argument): the caller then runs the query as written and
// gets the driver's own error.
func (s *cachedStmt) args(args, buf []driver.NamedValue) ([]driver.NamedValue, bool) {
	if s.order == nil {
		return args, true
	}
	for i, a := range args {
		if a.Name != "" || a.Ordinal != i+1 {
			return nil, false
		}
	}
	out := slices.Grow(buf[:0], len(s.order))
	for i, k := range s.order {
		if k >= len(args) {
			clear(out)
			return nil, false
		}
		out = append(out, driver.NamedValue{Ordinal: i + 1, Value: args[k].Value})
	}
	return out, true
}
