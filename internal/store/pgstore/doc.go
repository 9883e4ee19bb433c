// Package pgstore is a store.Store in PostgreSQL (15 or newer), for
// gateways that share their state or outgrow one SQLite file. Several
// gateways may use one database at once.
//
// # Connecting
//
// Open takes a URL, postgres://user@host:port/db?sslmode=disable, or any
// connection string pgx accepts. Settings pgx does not know become session
// settings (search_path=hpcgate keeps the tables in that schema); the pool
// takes pool_max_conns (default: the number of CPUs, at least 4).
// scripts/setup-postgres.sh starts a cluster for development and tests and
// prints its URL.
//
// # Schema
//
// The embedded migrations (migrations/*.sql) are applied by Open, each in a
// transaction that holds an advisory lock, so gateways that start at once do
// not race; the version reached is recorded in the table schema_version. A
// database whose version is newer than the binary knows is refused.
//
// It is a storedriver.Driver under rowstore, which holds the rules. A job
// is stored as its storedriver.JobRow (jsonb, explicit versioned names)
// with the fields that lists filter on in columns of their own and its
// labels in job_labels, so that every filtered page is an index scan; its
// parameters and template document are kept as written, in json columns.
// Concurrent changes of one job serialize on its row lock; appends to one
// log stream on an advisory lock of the stream.
//
// # Durability
//
// A write returns once PostgreSQL committed it, which with
// synchronous_commit=on (the default, and what Open sets for its sessions
// unless the URL names another) means its WAL is flushed to disk, if the
// server runs with fsync=on (scripts/setup-postgres.sh sets fsync and
// synchronous_commit off unless HPCGATE_PG_DURABLE=1).
package pgstore
