package db

// MaxParams is the most arguments one statement may carry on both
// engines: SQLite's limit (SQLITE_MAX_VARIABLE_NUMBER, 32,766) is the lower
// one; PostgreSQL's wire protocol takes 65,535. A statement that batches
// rows splits them by their parameters against this, not by a count of
// rows or devices whose parameters vary.
const MaxParams = 32766
