// A live view of one deployment: its steps as chips, its log, its outcome.

import { onEngine } from "./api.js";
import { el } from "./dom.js";
import { progressInit, progressReduce, seconds } from "./format.js";

export class ProgressView {
  constructor(root) {
    this.root = root;
    this.state = progressInit();
    this.active = false;
  }

  /** Starts showing the next deployment's events. */
  begin() {
    this.state = progressInit();
    this.active = true;
    this.root.hidden = false;
    this.render();
  }

  end() {
    this.active = false;
  }

  push(e) {
    if (!this.active) return;
    this.state = progressReduce(this.state, e);
    this.render();
  }

  render() {
    const steps = this.root.querySelector(".steps");
    steps.replaceChildren(
      ...this.state.steps.map((s) =>
        el("li", { class: s.state }, s.name, s.seconds != null ? ` · ${seconds(s.seconds)}` : ""),
      ),
    );
    const log = this.root.querySelector(".log");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    log.textContent = this.state.log.join("\n");
    if (atBottom) log.scrollTop = log.scrollHeight;
    let out = this.root.querySelector(".outcome");
    const o = this.state.outcome;
    if (o) {
      if (!out) out = this.root.appendChild(el("p", { class: "outcome", role: "status" }));
      out.className = "outcome " + (o.status === "succeeded" ? "ok" : "bad");
      out.textContent =
        o.status === "succeeded" ? `Deployed and ready.` : `Failed: ${o.error ?? o.health}`;
    } else if (out) {
      out.remove();
    }
  }
}

const views = new Set();
let listening = false;

/** Registers a view to receive engine events (one listener for the whole page). */
export async function track(view) {
  views.add(view);
  if (!listening) {
    listening = true;
    await onEngine((e) => views.forEach((v) => v.push(e)));
  }
}
