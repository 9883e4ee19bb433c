package server

import (
	"net/http"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/catalog"
)

// Image archives: images that no registry serves, kept in the object store
// under images/NAME. Admins push them; a job whose template names one
// (image_archive) fetches it through GET /v1/jobs/{id}/image, and its
// agent loads it into the node's runtime once.

func imageKey(name string) string { return "images/" + name }

func imageName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if !catalog.ImageArchiveRE.MatchString(name) {
		return "", fieldError("name", "an image archive's name is letters, digits, '.', '_' and '-' (at most 128), not %q", name)
	}
	return name, nil
}

func (s *Server) imagesAdminOnly(r *http.Request) error {
	if !principal(r).IsAdmin() {
		return errorf(http.StatusForbidden, api.CodeForbidden, "only admins may push and list image archives")
	}
	return nil
}

// putImage stores an image archive (admin only). It is nobody's bytes:
// no user's quota is charged.
func (s *Server) putImage(w http.ResponseWriter, r *http.Request) error {
	if err := s.imagesAdminOnly(r); err != nil {
		return err
	}
	name, err := imageName(r)
	if err != nil {
		return err
	}
	if r.ContentLength > s.opts.MaxUploadBytes {
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "the archive is %d bytes, more than the limit of %d", r.ContentLength, s.opts.MaxUploadBytes)
	}
	a, err := s.bucket.Put(r.Context(), imageKey(name), http.MaxBytesReader(w, r.Body, s.opts.MaxUploadBytes))
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/images/"+name)
	return writeJSON(w, http.StatusCreated, api.FileInfo{Path: name, Size: a.Size, SHA256: a.SHA256, Modified: a.Modified.UTC()})
}

// listImages lists the image archives (admin only).
func (s *Server) listImages(w http.ResponseWriter, r *http.Request) error {
	if err := s.imagesAdminOnly(r); err != nil {
		return err
	}
	return s.listPrefix(w, r, imageKey(""), "")
}

// agentImage serves the image archive of the job's template to its agent.
func (s *Server) agentImage(w http.ResponseWriter, r *http.Request) error {
	j, err := s.agentJob(r)
	if err != nil {
		return err
	}
	t, err := s.recipe(j)
	if err != nil {
		return err
	}
	if t.ImageArchive == "" {
		return errorf(http.StatusNotFound, api.CodeNotFound, "the job's template has no image archive")
	}
	return s.serveObject(w, r, imageKey(t.ImageArchive), t.ImageArchive)
}
