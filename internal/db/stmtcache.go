package db

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
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
}

type cachedStmt struct {
	exec  driver.StmtExecContext
	query driver.StmtQueryContext
	close io.Closer
	busy  bool // rows from it are open
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
	st, err := c.prepare.PrepareContext(ctx, query)
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
	s := &cachedStmt{exec: ex, query: qu, close: st}
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
	if s.busy {
		return c.exec.ExecContext(ctx, query, args)
	}
	return s.exec.ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) == 0 {
		return c.query.QueryContext(ctx, query, args)
	}
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.busy {
		// The same query is already open on this connection (a nested
		// read): run this one on its own statement.
		return c.query.QueryContext(ctx, query, args)
	}
	rows, err := s.query.QueryContext(ctx, args)
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
