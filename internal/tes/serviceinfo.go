package tes

// ServiceInfo is tesServiceInfo (GA4GH service-info, with TES's storage
// and backend parameters).
type ServiceInfo struct {
	ID           string       `json:"id"`
	Name         string       `json:"name"`
	Type         ServiceType  `json:"type"`
	Description  string       `json:"description,omitempty"`
	Organization Organization `json:"organization"`
	Version      string       `json:"version"`
	// Storage lists where inputs come from and outputs go:
	// s3://BUCKET (the user's files), job: (a job's outputs), https://.
	Storage                       []string `json:"storage"`
	TesResourcesBackendParameters []string `json:"tesResources_backend_parameters"`
}

// ServiceType is GA4GH's service type: org.ga4gh, tes, 1.1.0.
type ServiceType struct {
	Group    string `json:"group"`
	Artifact string `json:"artifact"`
	Version  string `json:"version"`
}

// Organization runs the service.
type Organization struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// BackendParameters are the keys of tesResources.backend_parameters the
// gateway honours: the hpcgate environment a task runs in, the project
// it is charged to, its walltime in seconds (default: the environment's
// most), and hold ("true": the task waits, PAUSED, until released with
// POST /v1/jobs/{id}/release).
var BackendParameters = []string{"environment", "project", "walltime_s", "hold"}

// NewServiceInfo describes the gateway as a TES 1.1 service whose
// storage bucket is bucket.
func NewServiceInfo(id, version, orgName, orgURL, bucket string) ServiceInfo {
	return ServiceInfo{
		ID: id, Name: "hpcgate", Version: version,
		Type:                          ServiceType{Group: "org.ga4gh", Artifact: "tes", Version: "1.1.0"},
		Description:                   "hpcgate: GA4GH TES over HPC queueing engines (Slurm, Grid Engine, a local executor)",
		Organization:                  Organization{Name: orgName, URL: orgURL},
		Storage:                       []string{"s3://" + bucket, "job:", "https://"},
		TesResourcesBackendParameters: BackendParameters,
	}
}
