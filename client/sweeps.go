package client

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/hpcgate/hpcgate/api"
)

// CreateSweep creates one job of a template for each of req's variants:
// all of them, or none and an error naming every invalid field.
func (c *Client) CreateSweep(ctx context.Context, req api.SweepRequest, idemKey string) (*api.Sweep, error) {
	var hdr http.Header
	if idemKey != "" {
		hdr = http.Header{"Idempotency-Key": {idemKey}}
	}
	var out api.Sweep
	return &out, c.call(ctx, http.MethodPost, "/v1/sweeps", nil, req, &out, hdr)
}

// Sweep returns a sweep's state: its jobs per state.
func (c *Client) Sweep(ctx context.Context, id string) (*api.Sweep, error) {
	var out api.Sweep
	return &out, c.call(ctx, http.MethodGet, "/v1/sweeps/"+url.PathEscape(id), nil, nil, &out, nil)
}

// CancelSweep cancels the jobs of a sweep that have not ended.
func (c *Client) CancelSweep(ctx context.Context, id string) (*api.Sweep, error) {
	var out api.Sweep
	return &out, c.call(ctx, http.MethodPost, "/v1/sweeps/"+url.PathEscape(id)+"/cancel", nil, nil, &out, nil)
}

// SweepResults returns one row per variant of a sweep, in order.
func (c *Client) SweepResults(ctx context.Context, id string) ([]api.SweepResult, error) {
	var out []api.SweepResult
	return out, c.call(ctx, http.MethodGet, "/v1/sweeps/"+url.PathEscape(id)+"/results", nil, nil, &out, nil)
}

// SweepResultsCSV returns a sweep's results as CSV: index, job, state,
// exit_code, a column per parameter and one per member of the results.
func (c *Client) SweepResultsCSV(ctx context.Context, id string) (io.ReadCloser, error) {
	resp, err := c.Do(ctx, http.MethodGet, "/v1/sweeps/"+url.PathEscape(id)+"/results", nil, nil, http.Header{"Accept": {"text/csv"}})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
