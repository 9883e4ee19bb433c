// The submit form of a template, generated from its JSON Schema (types,
// defaults, enums, minimum and maximum, descriptions as help text), its
// inputs (a stored file, or one uploaded here with a progress bar), the
// environments it runs in and resources within their limits. The API's
// field errors appear at the field their path names.

import { api, upload, APIError } from "./api.js";
import { h, replace, announce, bytes } from "./dom.js";

let seq = 0;
const uid = (p) => `${p}-${++seq}`;

// field makes a labelled control with its help and an error slot; the
// control gets aria-describedby for both.
function field(label, control, help, key, fields) {
  const helpID = help ? uid("help") : null;
  const errID = uid("err");
  control.id = control.id || uid("f");
  control.setAttribute("aria-describedby", [helpID, errID].filter(Boolean).join(" "));
  const err = h("p", { class: "error", id: errID, hidden: true });
  const wrap = h("div", { class: "field" }, h("label", { for: control.id }, label), control,
    help ? h("p", { class: "help", id: helpID }, help) : null, err);
  fields.set(key, { control, err });
  return wrap;
}

// paramControl is the control of one schema property.
function paramControl(name, s) {
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (Array.isArray(s.enum)) {
    return h("select", { name }, s.enum.map((v) => h("option", { value: JSON.stringify(v), selected: v === s.default }, String(v))));
  }
  if (type === "boolean") return h("input", { type: "checkbox", name, checked: s.default === true });
  if (type === "integer" || type === "number") {
    return h("input", {
      type: "number", name, inputmode: type === "integer" ? "numeric" : "decimal",
      step: type === "integer" ? (s.multipleOf || 1) : (s.multipleOf || "any"),
      min: s.minimum ?? null, max: s.maximum ?? null, value: s.default ?? null,
    });
  }
  if (type === "object" || type === "array") {
    return h("textarea", { name, rows: 3, spellcheck: "false" }, s.default !== undefined ? JSON.stringify(s.default) : "");
  }
  return h("input", { type: "text", name, minlength: s.minLength ?? null, maxlength: s.maxLength ?? null, pattern: s.pattern ?? null, value: s.default ?? null });
}

function paramHelp(s, required) {
  const bits = [];
  if (s.description) bits.push(s.description);
  if (s.minimum !== undefined || s.maximum !== undefined) bits.push(`From ${s.minimum ?? "−∞"} to ${s.maximum ?? "∞"}.`);
  if (s.exclusiveMinimum !== undefined) bits.push(`More than ${s.exclusiveMinimum}.`);
  if (s.default !== undefined) bits.push(`Default ${JSON.stringify(s.default)}.`);
  if (required) bits.push("Required.");
  return bits.join(" ");
}

// paramValue reads a control back as the JSON value the schema wants;
// undefined leaves the parameter out (its default applies).
function paramValue(control, s) {
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (control.tagName === "SELECT") return JSON.parse(control.value);
  if (type === "boolean") return control.checked;
  const v = control.value.trim();
  if (v === "") return undefined;
  if (type === "integer" || type === "number") return Number(v);
  if (type === "object" || type === "array") {
    try { return JSON.parse(v); } catch { return v; } // the API names the field
  }
  return control.value;
}

// submitForm renders the form for template t into el; files are the
// user's stored files, envs the environments by name.
export function submitForm(el, t, files, envs, onCreated) {
  const fields = new Map(); // API field path → {control, err}
  const schema = t.parameters || {};
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  const banner = h("div", { class: "banner error", role: "alert", hidden: true });

  const nameCtl = h("input", { type: "text", name: "name", maxlength: 128, placeholder: t.name });
  const params = Object.entries(props).map(([name, s]) =>
    field(name, paramControl(name, s), paramHelp(s, required.has(name)), "parameters." + name, fields));

  const inputs = (t.inputs || []).map((inp) => {
    const sel = h("select", { name: "input-" + inp.name },
      h("option", { value: "" }, inp.required ? "— choose a file —" : "— none —"),
      files.map((f) => h("option", { value: f.path }, `${f.path} (${bytes(f.size)})`)));
    const picker = h("input", { type: "file", "aria-label": `Upload a new file for ${inp.name}` });
    const bar = h("progress", { max: 1, value: 0, hidden: true, "aria-label": `Upload of ${inp.name}` });
    picker.addEventListener("change", async () => {
      const f = picker.files[0];
      if (!f) return;
      const path = `uploads/${f.name}`;
      bar.hidden = false;
      try {
        const info = await upload(path, f, (p) => { bar.value = p; });
        sel.append(h("option", { value: info.path || path }, `${info.path || path} (${bytes(f.size)})`));
        sel.value = info.path || path;
        announce(`Uploaded ${f.name}`);
      } catch (e) {
        showError(fields.get("inputs." + inp.name), e.message);
      } finally {
        bar.hidden = true;
      }
    });
    const help = [inp.description, `Read by the command at ${inp.path}.`, inp.max_size ? `At most ${bytes(inp.max_size)}.` : "", inp.required ? "Required." : ""].filter(Boolean).join(" ");
    const f = field(inp.name, sel, help, "inputs." + inp.name, fields);
    f.append(h("div", { class: "row" }, picker, bar));
    return f;
  });

  const envSel = h("select", { name: "environment" }, t.environments.map((e) => h("option", { value: e }, e)));
  const resources = h("div", { class: "row" });
  const resFields = [["nodes", "Nodes"], ["cores_per_node", "Cores per node"], ["memory_mb", "Memory per node (MiB)"], ["walltime_s", "Walltime (s)"]];
  const renderResources = () => {
    const env = envs.get(envSel.value) || { max: {} };
    replace(resources, resFields.map(([k, label]) => {
      const tmax = (t.resources.max || {})[k] || 0;
      const emax = (env.max || {})[k] || 0;
      const limit = [tmax, emax].filter((x) => x > 0).reduce((a, b) => Math.min(a, b), Infinity);
      const ctl = h("input", { type: "number", name: k, min: k === "nodes" || k === "cores_per_node" ? 1 : 0, max: limit === Infinity ? null : limit, step: 1, inputmode: "numeric", value: (t.resources.default || {})[k] || null });
      return field(label, ctl, limit === Infinity ? "No limit." : `At most ${limit}.`, "resources." + k, fields);
    }));
  };
  envSel.addEventListener("change", renderResources);
  renderResources();

  const submit = h("button", { type: "submit" }, "Submit");
  const form = h("form", { novalidate: true },
    banner,
    field("Job name", nameCtl, "Optional; the template's name by default.", "name", fields),
    params.length ? h("fieldset", {}, h("legend", {}, "Parameters"), params) : null,
    inputs.length ? h("fieldset", {}, h("legend", {}, "Inputs"), inputs) : null,
    h("fieldset", {}, h("legend", {}, "Where and with what"),
      field("Environment", envSel, "Where the job runs.", "environment", fields), resources),
    submit);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const f of fields.values()) clearError(f);
    banner.hidden = true;
    const req = { template: t.name, version: t.version, environment: envSel.value, parameters: {}, inputs: {}, resources: {} };
    if (nameCtl.value.trim()) req.name = nameCtl.value.trim();
    for (const [name, s] of Object.entries(props)) {
      const v = paramValue(fields.get("parameters." + name).control, s);
      if (v !== undefined) req.parameters[name] = v;
    }
    for (const inp of t.inputs || []) {
      const v = fields.get("inputs." + inp.name).control.value;
      if (v) req.inputs[inp.name] = v;
    }
    for (const [k] of resFields) {
      const v = fields.get("resources." + k).control.value;
      if (v !== "") req.resources[k] = Number(v);
    }
    submit.disabled = true;
    try {
      const j = await api("POST", "/v1/jobs", req);
      announce(`Job ${j.id} submitted`);
      onCreated(j);
    } catch (e) {
      let first = null;
      const rest = [];
      for (const fe of (e instanceof APIError ? e.fields : [])) {
        const f = fields.get(fe.field);
        if (f) {
          showError(f, fe.message);
          first = first || f.control;
        } else {
          rest.push(`${fe.field}: ${fe.message}`);
        }
      }
      if (!first || rest.length) {
        replace(banner, e.message, rest.length ? h("ul", {}, rest.map((r) => h("li", {}, r))) : null);
        banner.hidden = false;
      }
      (first || banner).focus?.();
      if (!first) banner.scrollIntoView();
      announce("The job was not submitted: " + e.message);
    } finally {
      submit.disabled = false;
    }
  });
  replace(el, form);
}

function showError(f, msg) {
  if (!f) return;
  f.err.textContent = msg;
  f.err.hidden = false;
  f.control.setAttribute("aria-invalid", "true");
}

function clearError(f) {
  f.err.textContent = "";
  f.err.hidden = true;
  f.control.removeAttribute("aria-invalid");
}
