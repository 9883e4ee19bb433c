// hpcgate's web interface: a page per hash route (#/jobs, #/jobs/ID,
// #/templates, #/templates/NAME, #/files, #/environments, #/sweeps/ID),
// each built from the public API alone, signed in by a web session.

import { api, upload, quotePath, APIError, sessionKey, keepSessionKey } from "./api.js";
import { h, replace, announce, bytes, age, when, stateBadge, table, facts } from "./dom.js";
import { submitForm } from "./form.js";
import { LogView } from "./log.js";

const main = document.getElementById("main");
const terminal = new Set(["succeeded", "failed", "canceled"]);
const states = ["pending", "held", "queued", "starting", "running", "suspended", "finishing", "succeeded", "failed", "canceled"];

// cleanups end what a page started (log streams, event streams) when
// another page replaces it.
let cleanups = [];
function onLeave(f) { cleanups.push(f); }

// onChanges calls f after job changes of the user (GET /v1/events, the
// server-sent events the CLI follows too), at most every 300 ms, and once
// the stream is open (or open again after a break): so that no change
// made while the page was loading, or the stream was down, is missed. f
// reads what it shows anew; it gets the first change of its batch.
function onChanges(f) {
  const es = new EventSource("/v1/events");
  let timer = null;
  const soon = (c) => { if (!timer) timer = setTimeout(() => { timer = null; f(c); }, 300); };
  es.addEventListener("open", () => soon({}));
  es.addEventListener("job", (e) => {
    let c = {};
    try { c = JSON.parse(e.data); } catch { return; }
    soon(c);
  });
  onLeave(() => { es.close(); clearTimeout(timer); });
}

// showPage puts a page in place of the last. Pages are shown through
// the route that asked for them (route's show), so that a slow page
// never replaces the one the user went to after it.
function showPage(title, ...content) {
  document.title = `${title} · hpcgate`;
  replace(main, h("h1", {}, title), content);
  for (const a of document.querySelectorAll("#nav a")) {
    const here = location.hash.startsWith(a.getAttribute("href") || "-");
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  announce(`${title} page`);
}

function failure(e) {
  return h("div", { class: "banner error", role: "alert" }, e.message || String(e));
}

// ---------------------------------------------------------------- sign in

function signIn(message) {
  document.getElementById("nav").hidden = true;
  const token = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help signin-error" });
  const err = h("p", { class: "error", id: "signin-error", role: "alert" }, message || "");
  const form = h("form", { class: "signin" },
    h("div", { class: "field" },
      h("label", { for: "token" }, "Token"), token,
      h("p", { class: "help", id: "token-help" }, "A token from your centre (or hpcgate token create). It is exchanged for a session that ends when you sign out, in 12 hours at most; the page does not keep it.")),
    err, h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    try {
      const r = await fetch("/v1/sessions", { method: "POST", headers: { Authorization: "Bearer " + token.value.trim(), Accept: "application/json" }, credentials: "same-origin" });
      token.value = "";
      if (!r.ok) {
        const p = await r.json().catch(() => ({}));
        err.textContent = r.status === 401 ? "This token is not valid, or has expired." : (p.detail || p.title || `HTTP ${r.status}`);
        token.focus();
        return;
      }
      keepSessionKey((await r.json()).key);
      await start();
    } catch (e) {
      err.textContent = e.message;
    }
  });
  showPage("Sign in", form);
  token.focus();
}

async function signOut() {
  try {
    await api("DELETE", "/v1/sessions/current");
  } catch (e) {
    if (!(e instanceof APIError && e.status === 401)) { // 401: it had ended already
      announce("Signing out failed: " + e.message);
      main.prepend(failure(new Error("Signing out failed: " + e.message + ". Try again.")));
      return;
    }
  }
  keepSessionKey("");
  signIn("You are signed out.");
}

// ---------------------------------------------------------------- jobs

async function jobsPage(page, q) {
  const filters = { state: q.get("state") || "", template: q.get("template") || "", label: q.get("label") || "" };
  const tokens = (q.get("pages") || "").split(",").filter(Boolean); // page tokens up to here
  const stateSel = h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "any"),
    states.map((s) => h("option", { value: s, selected: s === filters.state }, s)));
  const tpl = h("input", { id: "f-template", name: "template", value: filters.template, size: 14 });
  const label = h("input", { id: "f-label", name: "label", value: filters.label, placeholder: "key=value", size: 14 });
  const form = h("form", { class: "row", role: "search", "aria-label": "Filter jobs" },
    h("div", { class: "field" }, h("label", { for: "f-state" }, "State"), stateSel),
    h("div", { class: "field" }, h("label", { for: "f-template" }, "Template"), tpl),
    h("div", { class: "field" }, h("label", { for: "f-label" }, "Label"), label),
    h("button", { type: "submit", class: "secondary" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, el] of [["state", stateSel], ["template", tpl], ["label", label]]) if (el.value.trim()) p.set(k, el.value.trim());
    location.hash = "#/jobs?" + p;
  });
  const list = h("div", { "aria-live": "polite", "aria-busy": "true" });
  page("Jobs", h("p", {}, h("a", { href: "#/templates", class: "button" }, "Submit a job")), form, list);

  const load = async () => {
    const p = new URLSearchParams({ limit: "50" });
    for (const [k, v] of Object.entries(filters)) if (v) p.set(k, v);
    if (tokens.length) p.set("page_token", tokens[tokens.length - 1]);
    try {
      const res = await api("GET", "/v1/jobs?" + p);
      const nav = h("div", { class: "controls" });
      const base = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
      if (tokens.length) {
        const prev = new URLSearchParams(base); const rest = tokens.slice(0, -1);
        if (rest.length) prev.set("pages", rest.join(","));
        nav.append(h("a", { href: "#/jobs?" + prev, class: "button secondary" }, "Newer"));
      }
      if (res.next_page_token) {
        const next = new URLSearchParams(base); next.set("pages", [...tokens, res.next_page_token].join(","));
        nav.append(h("a", { href: "#/jobs?" + next, class: "button secondary" }, "Older"));
      }
      replace(list, res.items.length ? table("Jobs, newest first", ["Job", "State", "Template", "Environment", "Created"],
        res.items.map((j) => [h("a", { href: "#/jobs/" + j.id }, j.name || j.id, h("span", { class: "visually-hidden" }, " " + j.id)), stateBadge(j.state), j.template, j.environment, h("span", { title: j.created_at }, age(j.created_at))]))
        : h("p", {}, "No jobs match."), nav);
    } catch (e) {
      replace(list, failure(e));
    }
    list.setAttribute("aria-busy", "false");
  };
  if (!tokens.length) onChanges(load); // the newest page follows changes live
  await load();
}

async function jobPage(page, id) {
  const j = await api("GET", `/v1/jobs/${encodeURIComponent(id)}`);
  const head = h("div");
  const timeline = h("section", { "aria-labelledby": "h-timeline" }, h("h2", { id: "h-timeline" }, "Timeline"));
  const results = h("section", { "aria-labelledby": "h-results" });
  const outputs = h("section", { "aria-labelledby": "h-outputs" });
  const children = h("section", { "aria-labelledby": "h-children" });
  const logs = ["stdout", "stderr"].map((s) => new LogView(id, s));
  page(j.name || id, head, h("div", {}, logs.map((l) => l.el)), timeline, results, outputs, children);
  for (const l of logs) { l.start(); onLeave(() => l.stop()); }

  const render = async (j) => {
    const controls = h("div", { class: "controls", role: "group", "aria-label": "Job controls" });
    const act = (what, label, cls) => {
      const b = h("button", { type: "button", class: cls || "secondary" }, label);
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          const nj = await api("POST", `/v1/jobs/${encodeURIComponent(id)}/${what}`);
          announce(`Job ${nj.state}`);
          await render(nj);
        } catch (e) {
          controls.append(failure(e));
          b.disabled = false;
        }
      });
      controls.append(b);
    };
    if (!terminal.has(j.state)) act("cancel", "Cancel", "danger");
    if (["pending", "queued"].includes(j.state)) act("hold", "Hold");
    if (j.state === "held") act("release", "Release");
    if (j.state === "running") act("suspend", "Suspend");
    if (j.state === "suspended") act("resume", "Resume");
    const u = j.usage;
    replace(head,
      facts([
        ["State", h("span", {}, stateBadge(j.state), j.reason ? " " + j.reason : "")],
        ["Job", j.id],
        ["Owner", j.owner],
        ["Labels", Object.entries(j.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")],
        ["Template", j.template === TES ? h("span", {}, "a GA4GH TES task (",
          h("a", { href: `/ga4gh/tes/v1/tasks/${encodeURIComponent(j.id)}?view=FULL` }, "as TES shows it"), ")")
          : h("span", {}, h("a", { href: "#/templates/" + encodeURIComponent(j.template) }, j.template), ` version ${j.template_version}`)],
        ["Environment", j.environment],
        ["Error", j.error || ""],
        ["Exit code", j.exit_code ?? ""],
        ["Created", when(j.created_at)],
        ["Started", when(j.started_at)],
        ["Finished", when(j.finished_at)],
        ["Resources", `${j.resources.nodes || 1} node(s) × ${j.resources.cores_per_node || 1} core(s)` + (j.resources.memory_mb ? `, ${j.resources.memory_mb} MiB` : "") + (j.resources.walltime_s ? `, walltime ${j.resources.walltime_s} s` : "")],
        ["Usage", u ? `${u.cpu_seconds.toFixed(2)} CPU s, ${u.wall_seconds.toFixed(1)} s elapsed, ${bytes(u.max_rss_bytes)} at most` : ""],
        ["Parent", j.parent_id ? h("a", { href: "#/jobs/" + j.parent_id }, j.parent_id) : ""],
        ["Sweep", j.sweep_id ? h("a", { href: "#/sweeps/" + j.sweep_id }, `${j.sweep_id} (variant ${j.sweep_index})`) : ""],
        ["Engine", j.backend ? `${j.backend.scheduler} ${j.backend.id || ""}` : ""],
      ]),
      controls,
      j.template === TES ? null : [h("h2", {}, "Parameters"),
        table("Parameters", ["Name", "Value"], Object.entries(j.parameters || {}).map(([k, v]) => [k, JSON.stringify(v)]))],
      Object.keys(j.inputs || {}).length ? [h("h2", {}, "Inputs"), table("Inputs", ["Name", "File"], Object.entries(j.inputs).map(([k, v]) => [k, v]))] : null);

    const ev = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/events`).catch(() => ({ items: [] }));
    replace(timeline, h("h2", { id: "h-timeline" }, "Timeline"),
      h("ol", {}, ev.items.map((e) => h("li", {}, when(e.time), " ", stateBadge(e.state), e.reason ? " " + e.reason : ""))));

    if (j.template === TES) {
      replace(outputs, await taskSections(j));
    } else if (terminal.has(j.state)) {
      const outs = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/outputs`).catch(() => ({ items: [] }));
      replace(outputs, h("h2", { id: "h-outputs" }, "Outputs"),
        outs.items.length ? [
          table("Outputs", ["File", "Size"], outs.items.map((f) => [h("a", { href: `/v1/jobs/${encodeURIComponent(id)}/outputs/${quotePath(f.path)}`, download: f.path.split("/").pop() }, f.path), bytes(f.size)])),
          h("a", { href: `/v1/jobs/${encodeURIComponent(id)}/outputs.tar.gz`, download: `${id}.tar.gz`, class: "button secondary" }, "Download all (.tar.gz)")]
          : h("p", {}, "No outputs."));
      const res = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/results`).catch(() => null);
      replace(results, res ? [h("h2", { id: "h-results" }, "Results"), resultsTable(res)] : null);
    }
    const kids = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/children`).catch(() => ({ items: [] }));
    replace(children, kids.items.length ? [h("h2", { id: "h-children" }, "Children"),
      table("Children", ["Job", "State", "Template"], kids.items.map((k) => [h("a", { href: "#/jobs/" + k.id }, k.name || k.id), stateBadge(k.state), k.template]))] : null);
  };
  // the job's changes, and its children's, show as they come
  onChanges(async () => {
    try { await render(await api("GET", `/v1/jobs/${encodeURIComponent(id)}`)); } catch { /* shown next time */ }
  });
  await render(j);
}

// TES is the template of the jobs that GA4GH TES tasks became.
const TES = "TES";

// taskSections show a TES task's executors as they ran and the files its
// outputs delivered to the user's files.
async function taskSections(j) {
  const t = await api("GET", `/ga4gh/tes/v1/tasks/${encodeURIComponent(j.id)}?view=BASIC`).catch(() => null);
  if (!t) return null;
  const ran = (t.logs && t.logs[0]) || { logs: [], outputs: [] };
  const execs = t.executors.map((e, i) => {
    const l = ran.logs[i];
    return [String(i), e.image, e.command.join(" "), l ? when(l.start_time) : "", l && l.end_time ? when(l.end_time) : "",
      l && l.end_time ? String(l.exit_code) + (e.ignore_error ? " (ignored)" : "") : ""];
  });
  const prefix = (ran.outputs[0] && ran.outputs[0].url.match(/^s3:\/\/[^/]+\//)) || [""];
  return [
    h("h2", { id: "h-outputs" }, "Executors"),
    table("Executors", ["#", "Image", "Command", "Started", "Ended", "Exit code"], execs),
    h("h2", {}, "Delivered to your files"),
    ran.outputs.length ? table("Delivered", ["File", "From", "Size"], ran.outputs.map((o) => {
      const p = o.url.slice(prefix[0].length);
      return [h("a", { href: `/v1/files/${quotePath(p)}`, download: p.split("/").pop() }, p), o.path, bytes(Number(o.size_bytes))];
    })) : h("p", {}, "Nothing yet."),
  ];
}

// resultsTable shows a job's results.json: an object as name/value rows,
// a list of objects as a table with their keys as columns.
function resultsTable(res) {
  if (Array.isArray(res) && res.every((r) => r && typeof r === "object" && !Array.isArray(r))) {
    const cols = [...new Set(res.flatMap((r) => Object.keys(r)))];
    return table("Results", cols, res.map((r) => cols.map((c) => fmt(r[c]))));
  }
  if (res && typeof res === "object" && !Array.isArray(res)) {
    return table("Results", ["Name", "Value"], Object.entries(res).map(([k, v]) => [k, fmt(v)]));
  }
  return h("pre", {}, JSON.stringify(res, null, 2));
}

const fmt = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : String(v ?? ""));

// ---------------------------------------------------------------- templates

async function templatesPage(page) {
  const res = await api("GET", "/v1/templates");
  page("Templates", table("Templates", ["Template", "Description", "Environments"],
    res.items.map((t) => [h("a", { href: "#/templates/" + encodeURIComponent(t.name) }, t.name, ` (v${t.version})`), t.description || "", t.environments.join(", ")])));
}

async function templatePage(page, name) {
  const [t, files, envs] = await Promise.all([
    api("GET", `/v1/templates/${encodeURIComponent(name)}`),
    allFiles(),
    api("GET", "/v1/environments"),
  ]);
  const formEl = h("div");
  page(`Submit ${t.name}`, t.description ? h("p", {}, t.description) : null, formEl);
  submitForm(formEl, t, files, new Map(envs.items.map((e) => [e.name, e])), (j) => { location.hash = "#/jobs/" + j.id; });
}

async function allFiles() {
  const out = [];
  let tok = "";
  for (let i = 0; i < 20; i++) {
    const res = await api("GET", "/v1/files?limit=1000" + (tok ? "&page_token=" + encodeURIComponent(tok) : ""));
    out.push(...res.items);
    if (!(tok = res.next_page_token)) break;
  }
  return out;
}

// ---------------------------------------------------------------- files

async function filesPage(page) {
  const list = h("div", { "aria-live": "polite" });
  const picker = h("input", { type: "file", id: "upload-file", multiple: true });
  const dir = h("input", { type: "text", id: "upload-dir", value: "", placeholder: "inputs", size: 16 });
  const progress = h("div");
  const drop = h("div", { class: "drop" },
    h("p", {}, "Drop files here, or choose them:"),
    h("div", { class: "row" },
      h("div", { class: "field" }, h("label", { for: "upload-file" }, "Files"), picker),
      h("div", { class: "field" }, h("label", { for: "upload-dir" }, "Into folder (optional)"), dir)),
    progress);
  const send = async (fileList) => {
    for (const f of fileList) {
      const path = (dir.value.trim() ? dir.value.trim().replace(/\/+$/, "") + "/" : "") + f.name;
      const bar = h("progress", { max: 1, value: 0, "aria-label": `Upload of ${path}` });
      const row = h("p", {}, `${path} (${bytes(f.size)}) `, bar);
      progress.append(row);
      try {
        await upload(path, f, (p) => { bar.value = p; });
        replace(row, `${path}: uploaded.`);
        announce(`Uploaded ${path}`);
      } catch (e) {
        replace(row, h("span", { class: "error" }, `${path}: ${e.message}`));
      }
    }
    await load();
  };
  picker.addEventListener("change", () => send(picker.files));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); send(e.dataTransfer.files); });
  page("Files", drop, list);

  const load = async () => {
    try {
      const files = await allFiles();
      replace(list, files.length ? table("Your files", ["File", "Size", "Modified", ""], files.map((f) => {
        // two steps, in the page (no blocking dialog): Delete, then Confirm
        const del = h("button", { type: "button", class: "secondary", "aria-label": `Delete ${f.path}` }, "Delete");
        let armed = null;
        del.addEventListener("click", async () => {
          if (!armed) {
            del.textContent = "Confirm delete";
            del.className = "danger";
            del.setAttribute("aria-label", `Confirm: delete ${f.path}`);
            announce(`Press again to delete ${f.path}`);
            armed = setTimeout(() => { armed = null; del.textContent = "Delete"; del.className = "secondary"; del.setAttribute("aria-label", `Delete ${f.path}`); }, 5000);
            return;
          }
          clearTimeout(armed);
          try { await api("DELETE", "/v1/files/" + quotePath(f.path)); announce(`Deleted ${f.path}`); await load(); } catch (e) { list.prepend(failure(e)); }
        });
        return [h("a", { href: "/v1/files/" + quotePath(f.path), download: f.path.split("/").pop() }, f.path), bytes(f.size), when(f.modified), del];
      })) : h("p", {}, "No files yet."));
    } catch (e) {
      replace(list, failure(e));
    }
  };
  await load();
}

// ---------------------------------------------------------------- environments

async function environmentsPage(page) {
  const res = await api("GET", "/v1/environments");
  const envs = await Promise.all(res.items.map((e) => api("GET", `/v1/environments/${encodeURIComponent(e.name)}`).catch(() => e)));
  const lim = (m) => [`${m.nodes || "any"} node(s)`, `${m.cores_per_node || "any"} core(s) each`, m.memory_mb ? `${m.memory_mb} MiB` : "", m.walltime_s ? `${m.walltime_s} s` : ""].filter(Boolean).join(", ");
  const live = (l) => !l ? "—" : [l.state, l.free_cores != null ? `${l.free_cores} free core(s)` : "", l.running_jobs != null ? `${l.running_jobs} running` : "", l.queued_jobs != null ? `${l.queued_jobs} queued` : "",
    l.free_cores_per_node ? "per node: " + Object.entries(l.free_cores_per_node).map(([n, c]) => `${n} ${c}`).join(", ") : ""].filter(Boolean).join("; ");
  page("Environments", table("Environments", ["Environment", "Engine", "Limits", "Now"],
    envs.map((e) => [h("span", {}, h("strong", {}, e.name), e.description ? h("br") : null, e.description || ""), e.scheduler + (e.container_runtime ? ` (${e.container_runtime})` : ""), lim(e.max || {}), live(e.live)])));
}

// ---------------------------------------------------------------- sweeps

async function sweepPage(page, id) {
  const render = async () => {
    const [s, res] = await Promise.all([
      api("GET", `/v1/sweeps/${encodeURIComponent(id)}`),
      api("GET", `/v1/sweeps/${encodeURIComponent(id)}/results`),
    ]);
    const items = Array.isArray(res) ? res : res.items || [];
    page(`Sweep ${id}`,
      facts([["Template", s.template], ["Variants", s.total], ["States", Object.entries(s.counts).map(([k, v]) => `${v} ${k}`).join(", ")]]),
      h("h2", {}, "Variants"),
      h("div", { class: "grid", role: "list", "aria-label": "Variants by state" },
        items.map((r) => h("a", { role: "listitem", href: "#/jobs/" + r.job, class: "cell-" + r.state, title: `variant ${r.index}: ${r.state}`, "aria-label": `variant ${r.index}, ${r.state}` }, String(r.index)))),
      h("h2", {}, "Results"),
      table("Results of every variant", ["Variant", "State", "Parameters", "Results"],
        items.map((r) => [h("a", { href: "#/jobs/" + r.job }, String(r.index)), stateBadge(r.state), fmt(r.parameters), r.results ? fmt(r.results) : ""])));
  };
  onChanges((c) => { if (!c.job_id || c.sweep_id === id) render().catch(() => {}); });
  await render();
}

// ---------------------------------------------------------------- router

let routeGen = 0;

async function route() {
  for (const f of cleanups) f();
  cleanups = [];
  const gen = ++routeGen;
  const page = (...a) => { if (gen === routeGen) showPage(...a); };
  const [path, query] = (location.hash.slice(1) || "/jobs").split("?");
  const q = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    switch (parts[0]) {
      case "jobs": await (parts[1] ? jobPage(page, parts[1]) : jobsPage(page, q)); break;
      case "templates": await (parts[1] ? templatePage(page, parts[1]) : templatesPage(page)); break;
      case "files": await filesPage(page); break;
      case "environments": await environmentsPage(page); break;
      case "sweeps": await sweepPage(page, parts[1]); break;
      default: location.hash = "#/jobs"; return;
    }
  } catch (e) {
    if (gen !== routeGen) return;
    if (e instanceof APIError && e.status === 401) return signIn("Your session has ended: sign in again.");
    page(e instanceof APIError && e.status === 404 ? "Not found" : "Something went wrong", failure(e));
  }
  if (gen === routeGen) main.focus({ preventScroll: true });
}

async function start() {
  if (!sessionKey()) return signIn(); // a cookie without its key changes nothing
  let me;
  try {
    me = await api("GET", "/v1/me");
  } catch (e) {
    if (e instanceof APIError && e.status === 401) return signIn();
    return showPage("The gateway does not answer", failure(e));
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = `Signed in as ${me.user}`;
  await route();
}

window.addEventListener("hashchange", () => { route(); });
document.getElementById("signout").addEventListener("click", signOut);
start();
