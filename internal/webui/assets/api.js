// The gateway's API, as the page uses it: same origin, the web session's
// cookie, and the session's key in the header that marks a request as the
// page's own (api.CSRFHeader) on every request that changes something.
// The cookie goes to every port of this host; the key stays in this
// origin's storage, which is this port's alone.

export const CSRF = "X-Hpcgate-Csrf";
const KEY = "hpcgate-session-key";

// sessionKey is the key of the page's session ("" when signed out);
// keepSessionKey keeps a new session's, or forgets it with "".
export function sessionKey() {
  return localStorage.getItem(KEY) || "";
}

export function keepSessionKey(key) {
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
}

// APIError is an answer other than 2xx: status, title, detail and the
// fields the problem names ({field, message}).
export class APIError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.fields = problem.errors || [];
  }
}

async function problemOf(r) {
  try {
    return await r.json();
  } catch {
    return { title: r.statusText };
  }
}

// api calls METHOD path with a JSON body (or a Blob), and returns the JSON
// answer (null for 204; the Response itself with raw: true).
export async function api(method, path, body, { raw = false, headers = {} } = {}) {
  const h = { Accept: "application/json", ...headers };
  if (method !== "GET" && method !== "HEAD") h[CSRF] = sessionKey();
  let b = body;
  if (body !== undefined && !(body instanceof Blob)) {
    h["Content-Type"] = "application/json";
    b = JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers: h, body: b, credentials: "same-origin" });
  if (!r.ok) throw new APIError(r.status, await problemOf(r));
  if (raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

// directFrom is the size from which a file goes straight to the object
// store in parts (as the CLI sends them), where the store presigns URLs.
export const directFrom = 64 << 20;

// upload stores a file in the user's files at path, reporting progress
// (0..1) as it goes, and resolves with the stored file's facts. A large
// file goes straight to the object store, its parts in parallel through
// presigned URLs (POST /v1/uploads), where the store has them; any other
// file, or on a store without them, through the gateway.
export async function upload(path, file, onProgress) {
  if (file.size >= directFrom) {
    let up = null;
    try {
      up = await api("POST", "/v1/uploads", { path, size: file.size });
    } catch (e) {
      if (!(e instanceof APIError && e.status === 409)) throw e; // 409: the store presigns nothing
    }
    if (up) return uploadParts(up, file, onProgress);
  }
  return putFile(path, file, onProgress);
}

// uploadParts sends the parts of an upload, four at a time, then asks the
// gateway to assemble them (their ETags, in order).
async function uploadParts(up, file, onProgress) {
  const sent = new Array(up.parts.length).fill(0);
  const report = () => onProgress && onProgress(sent.reduce((a, b) => a + b, 0) / file.size);
  const etags = new Array(up.parts.length);
  let next = 0;
  const worker = async () => {
    while (next < up.parts.length) {
      const i = next++;
      const blob = file.slice(i * up.part_size, Math.min(file.size, (i + 1) * up.part_size));
      etags[i] = await putPart(up.parts[i].url, blob, (n) => { sent[i] = n; report(); });
    }
  };
  try {
    await Promise.all([worker(), worker(), worker(), worker()]);
  } catch (e) {
    api("DELETE", "/v1/uploads/" + encodeURIComponent(up.id)).catch(() => {});
    throw e;
  }
  return api("POST", up.complete_url, { etags });
}

// putPart PUTs one part to its presigned URL and resolves with its ETag
// (which the store must expose to the page: its CORS rule's ExposeHeader).
function putPart(url, blob, onSent) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("PUT", url);
    x.upload.onprogress = (e) => onSent(e.loaded);
    x.onload = () => {
      const etag = x.getResponseHeader("ETag");
      if (x.status >= 200 && x.status < 300 && etag) { onSent(blob.size); resolve(etag); }
      else reject(new APIError(x.status, { title: x.status >= 200 && x.status < 300 ? "the object store does not show the part's ETag to the page (its CORS rule needs ExposeHeader ETag)" : `the object store refused a part (HTTP ${x.status})` }));
    };
    x.onerror = () => reject(new APIError(0, { title: "the object store cannot be reached from this page (its CORS rule must allow this gateway's origin)" }));
    x.send(blob);
  });
}

// putFile streams a file through the gateway (PUT /v1/files/PATH).
function putFile(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("PUT", "/v1/files/" + path.split("/").map(encodeURIComponent).join("/"));
    x.setRequestHeader(CSRF, sessionKey());
    x.setRequestHeader("Content-Type", "application/octet-stream");
    x.upload.onprogress = (e) => e.lengthComputable && onProgress && onProgress(e.loaded / e.total);
    x.onload = () => {
      let body = {};
      try { body = JSON.parse(x.responseText || "{}"); } catch { /* not JSON */ }
      if (x.status >= 200 && x.status < 300) resolve(body);
      else reject(new APIError(x.status, body));
    };
    x.onerror = () => reject(new APIError(0, { title: "the upload was interrupted" }));
    x.send(file);
  });
}

// path quotes each segment of a file or output path for a URL.
export const quotePath = (p) => p.split("/").map(encodeURIComponent).join("/");
