// Package templates embeds the example job templates that ship with
// hpcgate. They are the documentation of the template format and the
// end-to-end tests of the gateway.
package templates

import "embed"

// FS holds hello.yaml, wordcount.yaml, wordcount-container.yaml,
// fanout.yaml, and the variant studies evaluate.yaml, optimize.yaml,
// reduce.yaml and sweep-reduce.yaml, and mpi-pi.yaml, an MPI program
// across the nodes of a job.
//
//go:embed *.yaml
var FS embed.FS
