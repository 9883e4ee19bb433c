package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/store"
)

// Bulk data that need not pass through the gateway: presigned multipart
// uploads of users' files, presigned downloads (?redirect=true), and
// presigned input and output URLs for agents. All of it needs an object
// store that presigns (blob.Signer, i.e. S3); the file store answers 409
// and everything keeps working through the gateway.

const (
	// UploadTTL is how long a multipart upload's part URLs work; the
	// gateway aborts the uploads left unfinished after it.
	UploadTTL = 6 * time.Hour
	// OutputURLTTL is how long an output's presigned PUT works: for that
	// long after a job is removed, an output may still land under it
	// (store.Leftovers).
	OutputURLTTL  = time.Hour
	downloadTTL   = 15 * time.Minute
	minPartSize   = 16 << 20
	maxParts      = 10000
	directOutputs = 5 << 30 // S3's limit for one PUT
)

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (s *Server) signer() (blob.Signer, error) {
	sg, ok := s.bucket.(blob.Signer)
	if !ok {
		return nil, errorf(http.StatusConflict, api.CodeUnsupported, "this gateway's object store does not presign URLs: upload with PUT /v1/files/{path} and download without redirect")
	}
	return sg, nil
}

// The upload id carries the path and the store's upload id; it needs no
// secret, since the key it names is always in the caller's own namespace.
func uploadID(path, storeID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(path + "\x00" + storeID))
}

func parseUploadID(id string) (path, storeID string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(id)
	p, sid, ok := strings.Cut(string(b), "\x00")
	if err != nil || !ok || sid == "" {
		return "", "", errorf(http.StatusNotFound, api.CodeNotFound, "no such upload")
	}
	return p, sid, nil
}

func (s *Server) startUpload(w http.ResponseWriter, r *http.Request) error {
	sg, err := s.signer()
	if err != nil {
		return err
	}
	var req api.UploadRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkNewPath("path", req.Path); err != nil {
		return err
	}
	if req.Size <= 0 || req.Size > s.opts.MaxUploadBytes {
		return fieldError("size", "must be from 1 to %d bytes", s.opts.MaxUploadBytes)
	}
	// the bytes come straight to the object store: the room is checked
	// now, and held when the upload completes
	old, existed, err := s.objectSize(r.Context(), filesKey(principal(r), req.Path))
	if err != nil {
		return err
	}
	if err := s.uploadFits(r.Context(), principal(r).User, req.Size, old, existed); err != nil {
		return err
	}
	partSize := max(int64(minPartSize), (req.Size+maxParts-1)/maxParts)
	if req.SHA256 != "" && !sha256RE.MatchString(req.SHA256) {
		return fieldError("sha256", "must be 64 lower-case hex digits")
	}
	storeID, urls, err := sg.StartMultipart(r.Context(), filesKey(principal(r), req.Path), req.Size, partSize, req.SHA256, UploadTTL)
	if err != nil {
		return err
	}
	id := uploadID(req.Path, storeID)
	out := api.Upload{ID: id, Path: req.Path, PartSize: partSize, CompleteURL: "/v1/uploads/" + id + "/complete", ExpiresAt: time.Now().Add(UploadTTL).UTC()}
	for i, u := range urls {
		out.Parts = append(out.Parts, api.UploadPart{Number: i + 1, URL: u})
	}
	return writeJSON(w, http.StatusCreated, out)
}

func (s *Server) completeUpload(w http.ResponseWriter, r *http.Request) error {
	sg, err := s.signer()
	if err != nil {
		return err
	}
	path, storeID, err := parseUploadID(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := checkPath("path", path); err != nil {
		return err
	}
	var req api.UploadComplete
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	if len(req.ETags) == 0 || len(req.ETags) > maxParts {
		return fieldError("etags", "one ETag for each part, in order")
	}
	key, user := filesKey(principal(r), path), principal(r).User
	// The size declared when the upload began was checked then; what the
	// parts hold is held in the quota now, before they become the file (a
	// client may send more than it declared): over a limit, the upload is
	// dropped and the file left as it was.
	sent, err := sg.UploadedSize(r.Context(), key, storeID)
	if err != nil {
		return err
	}
	drop := func(err error) error {
		if aerr := sg.AbortMultipart(context.WithoutCancel(r.Context()), key, storeID); aerr != nil {
			s.logFor(r).Error("abort of an upload over a limit", "err", aerr)
		}
		return err
	}
	if sent > s.opts.MaxUploadBytes {
		return drop(tooLarge(sent, s.opts.MaxUploadBytes))
	}
	_, settle, err := s.holdRoom(r.Context(), user, key, nil, sent)
	var qe *store.QuotaError
	if errors.As(err, &qe) {
		return drop(err)
	}
	if err != nil {
		return err // the upload stays: it may be completed again
	}
	defer settle(keptOld) // nothing stored, or a panic: the key and the room are let go
	a, err := sg.CompleteMultipart(r.Context(), key, storeID, req.ETags)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrInvalidKey) {
			return err
		}
		return wrapf(err, http.StatusConflict, api.CodeConflict, "the object store refused to complete the upload: check that every part was sent whole and the ETags are in order, or start again")
	}
	if a.Size > sent { // parts sent again, larger, meanwhile: more than was held
		if err := s.bucket.Delete(context.WithoutCancel(r.Context()), key); err != nil {
			s.logFor(r).Error("delete of an upload larger than it held; it is not counted", "path", path, "err", err)
		}
		settle(removed) // the file it replaced is gone too
		return errorf(http.StatusConflict, api.CodeConflict, "parts were sent again while the upload completed (%d bytes, not %d): the file is removed; upload it again", a.Size, sent)
	}
	settle(a.Size)
	return writeJSON(w, http.StatusCreated, api.FileInfo{Path: path, Size: a.Size, SHA256: a.SHA256, Modified: a.Modified.UTC()})
}

// uploadFits answers whether size bytes may replace an object of old
// bytes of user's (or be a new one): no more than the upload limit, and
// within the quotas' room (less what uploads hold).
func (s *Server) uploadFits(ctx context.Context, user string, size, old int64, existed bool) error {
	if size > s.opts.MaxUploadBytes {
		return tooLarge(size, s.opts.MaxUploadBytes)
	}
	q, h := s.quotaOf(user), s.rooms.hold(user)
	defer h.end(ctx, store.Stored{}) // a check: nothing stays held
	if !existed && q.Files > 0 {
		if err := h.takeFile(ctx, q.Files); err != nil {
			return err
		}
	}
	if q.Bytes <= 0 {
		return nil
	}
	_, err := h.take(ctx, max(size-old, 0), q.Bytes, false)
	return err
}

// tooLarge refuses an upload of size bytes over the limit.
func tooLarge(size, limit int64) error {
	return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "the upload holds %d bytes, more than the limit of %d", size, limit)
}

func (s *Server) abortUpload(w http.ResponseWriter, r *http.Request) error {
	sg, err := s.signer()
	if err != nil {
		return err
	}
	path, storeID, err := parseUploadID(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := checkPath("path", path); err != nil {
		return err
	}
	if err := sg.AbortMultipart(r.Context(), filesKey(principal(r), path), storeID); err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return errorf(http.StatusNotFound, api.CodeNotFound, "no such upload (completed, aborted or expired)")
		}
		return fmt.Errorf("abort upload: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// redirect answers a download of key, which exists, with a presigned URL
// when the caller asks for one (?redirect=true) and the store can make
// one. It reports whether it answered.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, key string) (bool, error) {
	if !queryTrue(r, "redirect") || r.Method != http.MethodGet {
		return false, nil
	}
	sg, ok := s.bucket.(blob.Signer)
	if !ok {
		return false, nil // the file store streams; the answer is the same bytes
	}
	u, err := sg.SignGet(r.Context(), key, downloadTTL)
	if err != nil {
		return true, err
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u, http.StatusTemporaryRedirect)
	return true, nil
}

// agentOutputURL hands the agent a presigned PUT for one output.
func (s *Server) agentOutputURL(w http.ResponseWriter, r *http.Request) error {
	j, err := s.agentJob(r)
	if err != nil {
		return err
	}
	sg, err := s.signer()
	if err != nil {
		return err
	}
	var req api.OutputURLRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	if err := s.checkOutput(j, req.Path); err != nil {
		return err
	}
	if req.Size < 0 || req.Size > min(s.opts.MaxUploadBytes, directOutputs) {
		return fieldError("size", "larger than a direct upload may be; send it through PUT /v1/jobs/{id}/outputs/{path}")
	}
	// The output is counted when its URL is handed out: the agent sends
	// that many bytes, over what an earlier attempt may have stored. A
	// smaller size credits nothing back: the URL may never be used, and
	// the larger object would stay, uncounted.
	old, existed, err := s.objectSize(r.Context(), outputsPrefix(j.ID)+req.Path)
	if err != nil {
		return err
	}
	add := store.Stored{Bytes: max(req.Size-old, 0)}
	if !existed {
		add.Files = 1
	}
	q := s.quotaOf(j.Owner)
	if _, err := s.store.AddStored(r.Context(), j.Owner, add, store.Stored{Bytes: q.Bytes, Files: q.Files}); err != nil {
		return err
	}
	u, err := sg.SignPut(r.Context(), outputsPrefix(j.ID)+req.Path, req.Size, OutputURLTTL)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.SignedURL{URL: u, ExpiresAt: time.Now().Add(OutputURLTTL).UTC()})
}
