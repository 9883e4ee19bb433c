// A job's live log: the last part of the stream (GET .../logs/STREAM?tail=N
// says where it begins in X-Log-Offset), then what follows as it grows
// (follow=true, the same streaming endpoint the CLI uses). The page keeps
// at most keepBytes of it, so that a log of hundreds of megabytes neither
// freezes the page nor fills its memory; the whole log is a download.

import { h, replace } from "./dom.js";

const tailBytes = 256 << 10;
const keepBytes = 1 << 20;

// LogView follows stream of job id into a <pre>; stop() ends it.
export class LogView {
  constructor(id, stream) {
    this.id = id;
    this.stream = stream;
    this.pre = h("pre", { class: "log", tabindex: 0, "aria-label": `${stream} of job ${id}`, "data-stream": stream });
    this.note = h("p", { class: "log-note" });
    this.el = h("section", { "aria-labelledby": `h-${stream}` },
      h("h2", { id: `h-${stream}` }, stream, " ",
        h("a", { href: `/v1/jobs/${encodeURIComponent(id)}/logs/${stream}`, download: `${id}.${stream}.txt`, class: "log-note" }, "(download whole)")),
      this.note, this.pre);
    this.ctrl = new AbortController();
    this.text = "";
    this.dropped = 0;
  }

  async start() {
    const url = `/v1/jobs/${encodeURIComponent(this.id)}/logs/${this.stream}?tail=${tailBytes}&follow=true`;
    try {
      const r = await fetch(url, { signal: this.ctrl.signal, credentials: "same-origin" });
      if (!r.ok) {
        this.note.textContent = `The log cannot be shown (HTTP ${r.status}).`;
        return;
      }
      const from = Number(r.headers.get("X-Log-Offset") || 0);
      if (from > 0) this.dropped = from;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let pending = "", timer = null;
      const flush = () => { timer = null; this.add(pending); pending = ""; };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += value;
        // at most a few repaints a second, however fast the log grows
        if (!timer) timer = setTimeout(flush, 100);
      }
      if (timer) clearTimeout(timer);
      this.add(pending);
    } catch (e) {
      if (e.name !== "AbortError") this.note.textContent = "The log's stream broke off: reload the page to resume.";
    }
  }

  add(s) {
    if (!s) return;
    const atEnd = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 8;
    this.text += s;
    if (this.text.length > keepBytes) {
      const cut = this.text.length - keepBytes;
      const nl = this.text.indexOf("\n", cut);
      const at = nl >= 0 && nl - cut < 4096 ? nl + 1 : cut;
      this.dropped += at;
      this.text = this.text.slice(at);
    }
    replace(this.pre, this.text);
    this.note.textContent = this.dropped > 0 ? `Showing the end of the log; ${this.dropped.toLocaleString()} earlier characters are in the download.` : "";
    if (atEnd) this.pre.scrollTop = this.pre.scrollHeight;
  }

  stop() { this.ctrl.abort(); }
}
