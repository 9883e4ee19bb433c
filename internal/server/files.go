package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/store"
)

var errPageFull = errors.New("page full")

// listPrefix answers a page of the objects under prefix, with paths shown
// relative to it. filter, if set, is a further prefix of those paths.
func (s *Server) listPrefix(w http.ResponseWriter, r *http.Request, prefix, filter string) error {
	q := r.URL.Query()
	limit := 1000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return fieldError("limit", "must be a whole number from 1 to 10000")
		}
		limit = n
	}
	after := "" // a key: the page starts after it
	if tok := q.Get("page_token"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || checkPath("page_token", string(b)) != nil {
			return fieldError("page_token", "malformed: not one a listing gave")
		}
		after = prefix + string(b)
	}
	page := api.Page[api.FileInfo]{Items: []api.FileInfo{}}
	err := s.bucket.List(r.Context(), prefix+filter, after, func(a blob.Attrs) error {
		rel := strings.TrimPrefix(a.Key, prefix)
		if len(page.Items) == limit {
			page.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(page.Items[limit-1].Path))
			return errPageFull
		}
		page.Items = append(page.Items, api.FileInfo{Path: rel, Size: a.Size, SHA256: a.SHA256, Modified: a.Modified.UTC()})
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request) error {
	prefix := r.URL.Query().Get("prefix")
	if prefix != "" {
		if err := checkPath("prefix", strings.TrimSuffix(prefix, "/")); err != nil {
			return err
		}
	}
	return s.listPrefix(w, r, filesKey(principal(r), ""), prefix)
}

// filesKey is where path is among the caller's files: a person's own
// files, or, for a job's token, its job's own space (never its owner's
// files), which other jobs name as job:ID/files/PATH and which goes with
// the job.
func filesKey(p *auth.Principal, path string) string {
	if p.IsJob() {
		return jobFilesPrefix(p.JobID) + path
	}
	return userFilesKey(p.User, path)
}

func (s *Server) filePath(r *http.Request) (string, error) {
	p := r.PathValue("path")
	if err := checkPath("path", p); err != nil {
		return "", err
	}
	return p, nil
}

// putBody stores a size-limited request body under key.
// It is charged to user's stored bytes: one that would pass the user's
// quota is refused, and an object it replaces is left as it was.
func (s *Server) putBody(w http.ResponseWriter, r *http.Request, user, key string) (api.FileInfo, error) {
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 && r.Header.Get("Content-Length") == "" && len(r.TransferEncoding) == 0 {
		// HTTP/1.0 with no length: its body's end would be the
		// connection's, which a request cannot have; it stored an empty
		// file (found by the seventh probe). (HTTP/1.1 says such a body
		// is empty.)
		return api.FileInfo{}, errorf(http.StatusLengthRequired, api.CodeBadRequest, "say the body's length (Content-Length), or send it in chunks")
	}
	if r.ContentLength > s.opts.MaxUploadBytes {
		return api.FileInfo{}, errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "the file is %d bytes, more than the limit of %d", r.ContentLength, s.opts.MaxUploadBytes)
	}
	body, settle, err := s.holdRoom(r.Context(), user, key, http.MaxBytesReader(w, r.Body, s.opts.MaxUploadBytes), r.ContentLength)
	if err != nil {
		return api.FileInfo{}, err
	}
	defer settle(keptOld) // nothing stored, or a panic: the key and the room are let go
	if err := s.writePreconditions(r.Context(), r, key); err != nil {
		return api.FileInfo{}, err
	}
	a, err := s.bucket.Put(r.Context(), key, body)
	if err != nil {
		return api.FileInfo{}, err
	}
	settle(a.Size)
	return api.FileInfo{Size: a.Size, SHA256: a.SHA256, Modified: a.Modified.UTC()}, nil
}

func (s *Server) putFile(w http.ResponseWriter, r *http.Request) error {
	p, err := s.filePath(r)
	if err != nil {
		return err
	}
	if err := checkNewPath("path", p); err != nil {
		return err
	}
	fi, err := s.putBody(w, r, principal(r).User, filesKey(principal(r), p))
	if err != nil {
		return err
	}
	fi.Path = p
	w.Header().Set("Location", "/v1/files/"+p)
	return writeJSON(w, http.StatusCreated, fi)
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request) error {
	p, err := s.filePath(r)
	if err != nil {
		return err
	}
	return s.serveObject(w, r, filesKey(principal(r), p), p)
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request) error {
	p, err := s.filePath(r)
	if err != nil {
		return err
	}
	size, err := s.deleteObject(r.Context(), filesKey(principal(r), p), r)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("%s: %w", p, blob.ErrNotFound)
	}
	countStored(r.Context(), s.store, s.logFor(r), principal(r).User, store.Stored{Bytes: -size, Files: -1})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteObject deletes the object at key, in its key's turn (rooms),
// and returns its size, -1 if there was none: what it removed is what
// it saw, whatever writes of the key came before. The preconditions of
// r, if not nil, must hold (If-Match, If-None-Match).
func (s *Server) deleteObject(ctx context.Context, key string, r *http.Request) (int64, error) {
	endTurn, err := s.rooms.turn(ctx, key)
	if err != nil {
		return 0, err
	}
	defer endTurn()
	if r != nil {
		if err := s.writePreconditions(ctx, r, key); err != nil {
			return 0, err
		}
	}
	size, existed, err := s.objectSize(ctx, key)
	if err != nil || !existed {
		return -1, err
	}
	if err := s.bucket.Delete(ctx, key); errors.Is(err, blob.ErrNotFound) {
		return -1, nil
	} else if err != nil {
		return 0, err
	}
	return size, nil
}

// parseRange parses a single "bytes=" range against size. ok is false when
// the header is absent, not one range, or not a range at all (RFC 9110
// §14.2: then the whole object is sent); a range that starts past the
// end is unsatisfiable (416).
func parseRange(h string, size int64) (off, n int64, ok bool, err error) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, nil
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, nil
	}
	unsat := errorf(http.StatusRequestedRangeNotSatisfiable, api.CodeRangeUnsatisfied, "range %q is outside the file's %d bytes", h, size)
	if a == "" { // suffix: the last b bytes
		k, ok := rangeNumber(b)
		if !ok {
			return 0, 0, false, nil
		}
		if k == 0 || size == 0 {
			return 0, 0, false, unsat
		}
		k = min(k, size)
		return size - k, k, true, nil
	}
	start, ok := rangeNumber(a)
	if !ok {
		return 0, 0, false, nil
	}
	end := int64(math.MaxInt64)
	if b != "" {
		if end, ok = rangeNumber(b); !ok || end < start {
			return 0, 0, false, nil // no range: ignored
		}
	}
	if start >= size {
		return 0, 0, false, unsat
	}
	end = min(end, size-1)
	return start, end - start + 1, true, nil
}

// rangeNumber parses a range's position: digits only, any number of
// them (one past the largest int64 is past every file's end).
func rangeNumber(s string) (int64, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return math.MaxInt64, true
	}
	return n, true
}

// serveObject streams an object, honouring a single Range and HEAD, or
// redirects to a presigned URL with ?redirect=true.
func (s *Server) serveObject(w http.ResponseWriter, r *http.Request, key, name string) error {
	a, err := s.bucket.Stat(r.Context(), key)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("Last-Modified", a.Modified.UTC().Format(http.TimeFormat))
	if a.SHA256 != "" {
		h.Set("X-Checksum-Sha256", a.SHA256)
		h.Set("ETag", `"`+a.SHA256+`"`)
	}
	notModified, useRange, err := readPreconditions(r, a)
	if err != nil {
		return err
	}
	if notModified {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if done, err := s.redirect(w, r, key); done { // the preconditions hold for a redirect too
		return err
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	var off, n int64
	partial := false
	if useRange {
		if off, n, partial, err = parseRange(r.Header.Get("Range"), a.Size); err != nil {
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", a.Size))
			return err
		}
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, a.Size))
	} else {
		n = a.Size
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return nil
	}
	rc, _, err := s.bucket.Get(r.Context(), key, off, n)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.WriteHeader(status)
	// Large writes make large HTTP/2 frames; io.Copy's 32 KiB would not.
	_, err = io.CopyBuffer(w, struct{ io.Reader }{rc}, make([]byte, 1<<20))
	return err
}
