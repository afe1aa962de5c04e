// Package db opens kanal's database — SQLite for the embedded default,
// PostgreSQL in production — applies each domain's embedded migrations, and
// runs transactions that retry when the engine asks for a retry.
//
// SQL is written once with $n placeholders: pgx and modernc.org/sqlite both
// bind $n to the n-th argument. Only DDL may differ between the engines, in
// migration files named NNNN_name.sqlite.sql and NNNN_name.postgres.sql.
// Both engines are reached through database/sql, so every store has one code
// path; pgx's stdlib adapter keeps pgx's wire protocol and type handling.
package db
