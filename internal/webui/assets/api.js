// The gateway's API, as the page uses it: same origin, the web session's
// cookie, and the header that marks a request as the page's own
// (api.CSRFHeader) on every request that changes something.

export const CSRF = "X-Hpcgate-Csrf";

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
  if (method !== "GET" && method !== "HEAD") h[CSRF] = "1";
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

// upload PUTs a file to the user's files at path, reporting progress
// (0..1) as it goes; it resolves with the stored file's facts.
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("PUT", "/v1/files/" + path.split("/").map(encodeURIComponent).join("/"));
    x.setRequestHeader(CSRF, "1");
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
