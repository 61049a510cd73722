// Deployments: deploy a version, follow it live, cancel it; the history with one-click rollback.

import { call } from "./api.js";
import { $, el, toast, confirmDialog } from "./dom.js";
import { ago, clock, rollbackCandidates } from "./format.js";
import { FleetPanel } from "./fleet.js";
import { ProgressView, track } from "./progress.js";

export class Deployments {
  constructor(app) {
    this.app = app;
    this.view = new ProgressView($("#deploy-progress"));
    this.fleet = new FleetPanel(app);
    track(this.view);
    $("#deploy-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const custom = $("#deploy-custom").value.trim();
      this.deploy(custom || $("#deploy-tag").value, this.view);
    });
    for (const b of document.querySelectorAll('[data-action="cancel-deploy"]')) {
      b.addEventListener("click", () => this.cancel());
    }
    $("#watch-minutes").addEventListener("change", async (ev) => {
      const m = Number(ev.target.value);
      try {
        await this.app.patchSettings({ watch_minutes: Number.isInteger(m) ? m : -1 });
      } catch {
        ev.target.value = this.app.settings.watch_minutes;
      }
    });
  }

  async loadImages(select) {
    let images = [];
    let note = null;
    try {
      ({ images, note } = await call("images_list", { target: this.app.target }));
    } catch (e) {
      toast(e.message, true);
    }
    select.replaceChildren(
      ...images.map((i) => el("option", { value: i.tag }, `${i.tag} — ${i.detail}`)),
    );
    if (!images.length) select.append(el("option", { value: "" }, "no versions found"));
    // Why the registry's tags are missing, where the user looks for them.
    select.title = note ? `The registry's tags could not be listed: ${note}` : "";
    if (note) select.append(el("option", { value: "", disabled: true }, `registry: ${note}`));
    return images;
  }

  get isFleet() {
    return this.app.target === "sandbox-fleet";
  }

  hide() {
    this.fleet.hide();
  }

  async show() {
    $("#history").hidden = this.isFleet;
    if (this.isFleet) this.fleet.show();
    else this.fleet.hide();
    const g = this.app.settings.github;
    $("#via-github-wrap").hidden = !(this.app.target === "remote" && g.configured);
    $("#watch-minutes").value = this.app.settings.watch_minutes ?? 0;
    await Promise.all([this.loadImages($("#deploy-tag")), this.loadHistory()]);
  }

  setBusy(busy) {
    this.busy = busy;
    for (const b of document.querySelectorAll('[data-action="cancel-deploy"]')) b.hidden = !busy;
    for (const f of [$("#deploy-form"), $("#wizard-deploy")]) {
      f.querySelector('button[type="submit"]').disabled = busy;
    }
    for (const b of document.querySelectorAll("button[data-rollback]")) b.disabled = busy;
  }

  /** Deploys `tag` to the current target, streaming into `view`, through GitHub Actions when
   * `viaGithub` (by default: as this page's switch says). Resolves to the record or null. */
  async deploy(tag, view, viaGithub = $("#via-github").checked && !$("#via-github-wrap").hidden) {
    if (this.isFleet) {
      this.setBusy(true);
      // Each host's deploy streams into `view` in turn (the engine's events, host after host).
      view.begin();
      try {
        const r = await this.fleet.deploy(tag);
        // As a deploy's record: what the wizard's verify step and toasts read.
        return r && { ...r.rollout, health: r.rollout.status === "succeeded" ? "ready" : "unknown" };
      } finally {
        view.end();
        this.setBusy(false);
      }
    }
    if (!tag) {
      toast("Choose a version to deploy.", true);
      return null;
    }
    viaGithub = viaGithub && this.app.target === "remote";
    return this.run(view, () => call(viaGithub ? "deploy_github" : "deploy", { target: this.app.target, tag }));
  }

  async rollback(d, serving) {
    const ok = await confirmDialog(
      `Roll back to ${d.tag}?`,
      `${serving ? serving.tag : "The current version"} stops serving and ${d.tag} (deployment #${d.id}, healthy ${ago(d.finished_at_ms)}) starts again from the image already on the host.`,
      `Roll back to ${d.tag}`,
    );
    if (!ok) return null;
    return this.run(this.view, () => call("rollback", { target: this.app.target, to: d.id }));
  }

  async run(view, work) {
    this.setBusy(true);
    view.begin();
    try {
      const rec = await work();
      if (rec.status === "succeeded") toast(`${rec.tag} is serving.`);
      else toast(`${rec.tag} failed: ${rec.error ?? rec.health}`, true);
      return rec;
    } catch (e) {
      toast(e.message, true);
      return null;
    } finally {
      view.end();
      this.setBusy(false);
      await Promise.all([this.loadHistory(), this.app.refreshServing()]);
    }
  }

  async cancel() {
    try {
      const stopped = await call("deploy_cancel", { target: this.app.target });
      toast(stopped
        ? "Cancelling: the deploy stops before its next step; a GitHub workflow run is cancelled on GitHub."
        : "Nothing to cancel.");
    } catch (e) {
      toast(e.message, true);
    }
  }

  async loadHistory() {
    let h;
    try {
      h = await call("history_list", { target: this.app.target });
    } catch (e) {
      $("#history tbody").replaceChildren(el("tr", {}, el("td", { colspan: 7 }, e.message)));
      return;
    }
    const candidates = new Set(rollbackCandidates(h.deployments, h.serving).map((d) => d.id));
    const rows = h.deployments.map((d) => {
      const serving = h.serving && h.serving.id === d.id;
      const when = `${clock(d.started_at_ms)} (${ago(d.started_at_ms)})`;
      const trigger = d.rollback_of ? `${d.trigger} of #${d.rollback_of}` : d.trigger;
      const result = el("span", { class: `badge ${d.status === "succeeded" ? "ok" : d.status}` }, d.status);
      const health = el("span", { class: `badge ${d.health === "ready" ? "ok" : d.health === "unready" ? "bad" : "neutral"}` }, d.health);
      let action = "";
      if (serving) action = el("span", { class: "badge ok" }, "serving");
      else if (candidates.has(d.id) && !this.busy) {
        action = el("button", { type: "button", "data-rollback": d.id, onclick: () => this.rollback(d, h.serving) }, `Roll back to ${d.tag}`);
      }
      const row = el("tr", { class: serving ? "serving" : "" },
        el("td", { class: "num" }, d.id), el("td", {}, d.tag), el("td", {}, when), el("td", {}, trigger),
        el("td", {}, result, d.error ? el("div", { class: "muted" }, d.error) : ""), el("td", {}, health), el("td", {}, action));
      return row;
    });
    $("#history tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No deployments yet."))]));
  }
}
