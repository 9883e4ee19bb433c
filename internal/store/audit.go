package store

import "time"

// AuditEntry is one audited request: who changed (or tried to change)
// what, and how it ended. It never holds a token's secret.
type AuditEntry struct {
	Seq       int64     // set by the store: the entry's place in the log
	Time      time.Time // when the request arrived
	User      string    // the token's user ("" if unauthenticated)
	TokenID   string    // the token's id, never its secret
	JobID     string    // the job acted on, if any
	Action    string    // what was asked: the route pattern
	Target    string    // what it was aimed at: the request's path, or what it made ("token ID of bob")
	Outcome   int       // the HTTP status of the answer
	Client    string    // the client's address
	RequestID string    // the request id of the answer and the server log
}

// AuditFilter selects audit entries. Zero fields match everything.
type AuditFilter struct {
	User      string
	JobID     string
	Action    string
	Target    string    // entries whose target contains this
	Since     time.Time // entries at or after this time
	Until     time.Time // entries before this time
	Limit     int       // at most this many (default 100)
	PageToken string
}
