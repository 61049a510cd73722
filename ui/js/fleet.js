// The fleet on the Deployments page: its hosts as HAProxy sees them, and its rollouts with a row
// per host action, polled while the page is open so a rollout is followed host by host live.
// Rolling a fleet back is a rolling deploy of an earlier version; resizing adds hosts serving the
// fleet's version or drains and removes the last ones.

import { call } from "./api.js";
import { $, el, toast, confirmDialog } from "./dom.js";
import { ago, clock, seconds } from "./format.js";

const POLL_MS = 700;

function badge(status) {
  const cls = status === "succeeded" || status === "UP" ? "ok"
    : status === "running" ? "running"
    : status === "failed" || status === "rolled-back" || status.startsWith("DOWN") ? "bad" : "neutral";
  return el("span", { class: `badge ${cls}` }, status);
}

function figure(v) {
  return v == null ? "–" : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2);
}

export class FleetPanel {
  constructor(app) {
    this.app = app;
    this.timer = null;
    this.busy = false;
    $("#fleet-strategy").addEventListener("change", () => this.showOptions());
    $("#fleet-scale-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.resize(Number($("#fleet-size").value));
    });
    this.showOptions();
  }

  showOptions() {
    $("#fleet-watch-wrap").hidden = $("#fleet-strategy").value !== "canary";
  }

  show() {
    $("#fleet-panel").hidden = false;
    this.poll();
  }

  hide() {
    $("#fleet-panel").hidden = true;
    clearTimeout(this.timer);
    this.timer = null;
  }

  async poll() {
    clearTimeout(this.timer);
    await this.refresh();
    if (!$("#fleet-panel").hidden) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async refresh() {
    let s;
    try {
      s = await call("fleet_status");
    } catch (e) {
      $("#fleet-error").textContent = e.message;
      $("#fleet-error").hidden = false;
      return;
    }
    $("#fleet-error").hidden = true;
    // Drawn again only when something changed (or a minute passed, for the "ago" times): a table
    // replaced under the pointer loses the click that was landing on its button.
    const key = JSON.stringify([s, this.busy, Math.floor(Date.now() / 60000)]);
    if (key === this.drawn) return;
    this.drawn = key;
    this.render(s);
  }

  render(s) {
    $("#fleet-front").textContent = String(s.front_port);
    const n = s.hosts.length;
    // The dashboard's host selector and the target's name follow the fleet's size.
    if (this.app.info.fleet) this.app.info.fleet.hosts = s.hosts.map((h) => h.name);
    const option = $('option[value="sandbox-fleet"]');
    if (option) option.textContent = `This computer: ${n} host${n === 1 ? "" : "s"} behind HAProxy`;
    if (document.activeElement !== $("#fleet-size") && !this.busy) $("#fleet-size").value = String(n);
    $("#fleet-size").max = String(s.max_hosts);
    $("#fleet-max-unavailable").max = String(Math.max(1, n - 1));
    $("#fleet-resize").disabled = s.busy || this.busy;
    $("#fleet-hosts tbody").replaceChildren(...s.hosts.map((h) =>
      el("tr", { "data-host": h.name },
        el("th", { scope: "row" }, h.name), el("td", { class: "num" }, h.port),
        el("td", {}, badge(h.balancer), h.sessions ? el("span", { class: "muted" }, ` ${h.sessions} in flight`) : ""),
        el("td", {}, h.serving ? h.serving.tag : el("span", { class: "muted" }, "nothing")))));
    const current = s.rollouts.find((r) => r.rollout.status === "succeeded")?.rollout.tag;
    const offered = new Set();
    $("#fleet-rollouts").replaceChildren(...(s.rollouts.length ? s.rollouts.map((r) => {
      const o = r.rollout;
      let back = "";
      if (o.status === "succeeded" && o.strategy !== "scale" && o.tag !== current && !offered.has(o.tag) && !s.busy && !this.busy) {
        offered.add(o.tag);
        back = el("button", { type: "button", "data-fleet-rollback": o.tag, onclick: () => this.rollback(o.tag, current) }, `Roll back to ${o.tag}`);
      }
      const verdict = o.verdict ? JSON.parse(o.verdict) : null;
      return el("section", { class: "rollout", "data-rollout": o.id, "data-status": o.status },
        el("h3", {}, `#${o.id} · ${o.tag} · ${o.strategy} · `, badge(o.status),
          el("span", { class: "muted" }, ` ${clock(o.started_at_ms)} (${ago(o.started_at_ms)})`), back),
        o.error ? el("p", { class: "muted" }, o.error) : "",
        verdict ? el("table", { class: "grid verdict" },
          el("caption", {}, verdict.promote ? "Canary promoted" : `Canary refused: ${verdict.reason ?? ""}`),
          el("thead", {}, el("tr", {}, ...["Figure", "Canary", "Rest of the fleet", "Limit", ""].map((t) => el("th", { scope: "col" }, t)))),
          el("tbody", {}, ...verdict.figures.map((f) => el("tr", {},
            el("td", {}, f.name), el("td", { class: "num" }, figure(f.canary)), el("td", { class: "num" }, figure(f.fleet)),
            el("td", {}, f.limit), el("td", {}, badge(f.ok ? "succeeded" : "failed")))))) : "",
        el("table", { class: "grid rollout-hosts" },
          el("thead", {}, el("tr", {}, ...["Host", "Action", "Result", "Time", "Detail"].map((t) => el("th", { scope: "col" }, t)))),
          el("tbody", {}, ...r.hosts.map((h) => el("tr", { "data-host": h.host, "data-action": h.action, "data-status": h.status },
            el("td", {}, h.host), el("td", {}, h.action), el("td", {}, badge(h.status)),
            el("td", { class: "num" }, h.finished_at_ms ? seconds((h.finished_at_ms - h.started_at_ms) / 1000) : "…"),
            el("td", { class: "muted" }, h.detail ?? ""))))));
    }) : [el("p", { class: "muted" }, "No rollouts yet.")]));
  }

  /** Rolls `tag` out with the strategy chosen on the page; resolves to the report or null. */
  async deploy(tag, strategy = $("#fleet-strategy").value) {
    if (!tag) {
      toast("Choose a version to deploy.", true);
      return null;
    }
    this.busy = true;
    this.poll();
    try {
      const r = await call("fleet_deploy", {
        tag, strategy,
        maxUnavailable: Number($("#fleet-max-unavailable").value) || 1,
        watchS: Number($("#fleet-watch").value) || 60,
      });
      const o = r.rollout;
      if (o.status === "succeeded") toast(`${o.tag} is serving on every host.`);
      else toast(`${o.tag} was not rolled out (${o.status}): ${o.error ?? ""}`, true);
      return r;
    } catch (e) {
      toast(e.message, true);
      return null;
    } finally {
      this.busy = false;
      await Promise.all([this.refresh(), this.app.refreshServing()]);
    }
  }

  /** Resizes the fleet to `hosts` after a confirmation; resolves to the report or null. */
  async resize(hosts) {
    const now = this.app.info.fleet?.hosts?.length ?? 0;
    if (!Number.isInteger(hosts) || hosts < 1) {
      toast("A fleet has at least one host.", true);
      return null;
    }
    if (hosts === now) {
      toast(`The fleet already has ${hosts} host${hosts === 1 ? "" : "s"}.`, true);
      return null;
    }
    const adding = hosts > now;
    const ok = await confirmDialog(
      adding ? `Add ${hosts - now} host${hosts - now === 1 ? "" : "s"}?` : `Remove ${now - hosts} host${now - hosts === 1 ? "" : "s"}?`,
      adding
        ? "Each new host gets the version the fleet serves and joins HAProxy's pool once it passes the health check."
        : `h${hosts + 1}${now - hosts > 1 ? ` to h${now}` : ""} leave HAProxy's pool once their requests in flight are answered, then stop.`,
      adding ? "Add hosts" : "Remove hosts",
    );
    if (!ok) return null;
    this.busy = true;
    this.poll();
    try {
      const r = await call("fleet_scale", { hosts });
      const o = r.report.rollout;
      if (o.status === "succeeded") toast(`The fleet has ${r.hosts} host${r.hosts === 1 ? "" : "s"}.`);
      else toast(`Resize stopped with ${r.hosts} hosts: ${o.error ?? ""}`, true);
      return r;
    } catch (e) {
      toast(e.message, true);
      return null;
    } finally {
      this.busy = false;
      await this.refresh();
    }
  }

  async rollback(tag, current) {
    const ok = await confirmDialog(
      `Roll the fleet back to ${tag}?`,
      `${current ?? "The current version"} is replaced by ${tag} host by host: each host leaves HAProxy's pool, switches, and comes back once healthy, so the fleet keeps answering.`,
      `Roll back to ${tag}`,
    );
    if (ok) await this.deploy(tag, "rolling");
  }
}
