// The API reference: the vendored Swagger UI over this gateway's own
// openapi.json. "Try it out" uses the page's web session, if any.
window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: false,
    requestInterceptor: (req) => {
      // the session's key (api.js keeps it), to this gateway only
      if (new URL(req.url, location.href).origin === location.origin && req.method !== "GET" && req.method !== "HEAD") req.headers["X-Hpcgate-Csrf"] = localStorage.getItem("hpcgate-session-key") || "";
      return req;
    },
  });
});
