package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/sched"
)

func versionParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("version")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fieldError("version", "must be a positive whole number")
	}
	return n, nil
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("name")
	version, err := versionParam(r)
	if err != nil {
		return err
	}
	page := api.Page[api.Template]{Items: []api.Template{}}
	for _, t := range s.catalog.Load().Templates() {
		if (name == "" || t.Name == name) && (version == 0 || t.Version == version) {
			page.Items = append(page.Items, apiTemplate(t))
		}
	}
	return writeJSON(w, http.StatusOK, page)
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request) error {
	version, err := versionParam(r)
	if err != nil {
		return err
	}
	t, err := s.catalog.Load().Template(r.PathValue("name"), version)
	if err != nil {
		return wrapf(err, http.StatusNotFound, api.CodeNotFound, "%v", err) // the catalogue's words, for people
	}
	return writeJSON(w, http.StatusOK, apiTemplate(t))
}

func (s *Server) listEnvironments(w http.ResponseWriter, r *http.Request) error {
	page := api.Page[api.Environment]{Items: []api.Environment{}}
	for _, e := range s.catalog.Load().Environments() {
		page.Items = append(page.Items, apiEnvironment(e))
	}
	return writeJSON(w, http.StatusOK, page)
}

func (s *Server) getEnvironment(w http.ResponseWriter, r *http.Request) error {
	e, err := s.catalog.Load().Environment(r.PathValue("name"))
	if err != nil {
		return wrapf(err, http.StatusNotFound, api.CodeNotFound, "%v", err) // the catalogue's words, for people
	}
	out := apiEnvironment(e)
	out.Live = s.live(r.Context(), e)
	return writeJSON(w, http.StatusOK, out)
}

// live asks the environment's engine for its current facts.
func (s *Server) live(ctx context.Context, e *catalog.Environment) map[string]any {
	sc, ok := s.scheds[e.Name]
	if !ok {
		return map[string]any{"reachable": false, "error": "no such scheduler configured"}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := sc.Ping(ctx); err != nil {
		s.log.Warn("engine unreachable", "environment", e.Name, "err", err)
		return map[string]any{"reachable": false, "error": "the engine does not answer; the server log says why"}
	}
	out := map[string]any{"reachable": true}
	if d, ok := sc.(sched.Describer); ok {
		facts, err := d.Describe(ctx)
		if err != nil {
			s.log.Warn("engine cannot describe itself", "environment", e.Name, "err", err)
			out["error"] = "the engine's queue state is not available now; the server log says why"
		}
		for k, v := range facts {
			out[k] = v
		}
	}
	return out
}
