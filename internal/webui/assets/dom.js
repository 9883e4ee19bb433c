// DOM helpers: every value reaches the page as text or as a property,
// never as HTML, and with its invisible format characters shown.

// visible writes s's invisible format characters (Unicode's Cf: bidi
// overrides, zero-width spaces) as escapes, \u202e, as the CLI does: a
// right-to-left override showed a parameter "invoice\u202efdp.exe" as
// "invoiceexe.pdf" (found by the eighth probe).
const hasFormat = /\p{Cf}/u;
const formats = /\p{Cf}/gu;
export function visible(s) {
  return hasFormat.test(s) ? s.replace(formats, (c) => "\\u" + c.codePointAt(0).toString(16).padStart(4, "0")) : s;
}

// h makes an element: h("a", {href: "#/jobs", class: "x"}, "text", child).
// Attributes starting with "on" are listeners; null and false ones are
// left out; true is an empty attribute.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : k === "href" ? String(v) : visible(String(v)));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : visible(String(c)));
  }
}

// replace puts the children in place of el's.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// announce tells screen readers what happened (a polite live region).
export function announce(text) {
  const a = document.getElementById("announce");
  a.textContent = "";
  setTimeout(() => { a.textContent = text; }, 50);
}

// Formatting.
export function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

export function age(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.floor(s) + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

export function when(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, new Date(iso).toLocaleString()) : "";
}

export function stateBadge(state) {
  return h("span", { class: "state state-" + state }, state);
}

// table makes an accessible table: a caption, column headers, rows of
// cells (strings or nodes).
export function table(caption, headers, rows) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}

// facts is a definition list of [term, value] pairs (empty values left out).
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== "" && v != null)
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}
