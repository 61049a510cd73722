// The live dashboard: every chart comes drawn (SVG) from the app; this file lays them out, keeps
// the refresh going (pausable), and drives the sandbox's traffic switch.

import { call } from "./api.js";
import { $, $$, el, svgImage, toast } from "./dom.js";
import { clock, fixed, percent, pValue, verdictLabel } from "./format.js";

const REFRESH_MS = 10_000;

const TASK_LABELS = {
  autoencoder: "autoencoder",
  binary: "binary classifier",
  multiclass: "multi-class classifier",
  regressor: "regressor",
};

export class Dashboard {
  constructor(app) {
    this.app = app;
    this.timer = null;
    this.inflight = false;
    this.visible = false;
    for (const b of $$("[data-range]")) {
      b.addEventListener("click", async () => {
        await this.app.patchSettings({ dashboard: { ...this.app.settings.dashboard, range_s: Number(b.dataset.range) } });
        this.syncControls();
        await this.refresh();
      });
    }
    $("#pause").addEventListener("click", async () => {
      const paused = !this.app.settings.dashboard.paused;
      await this.app.patchSettings({ dashboard: { ...this.app.settings.dashboard, paused } });
      this.syncControls();
      if (!paused) await this.refresh();
    });
    $("#feature").addEventListener("change", async (ev) => {
      await this.app.patchSettings({ dashboard: { ...this.app.settings.dashboard, feature: ev.target.value } });
      await this.refresh();
    });
    $("#fleet-host").addEventListener("change", async () => {
      this.host = $("#fleet-host").value;
      await this.refresh();
    });
    $("#traffic-toggle").addEventListener("click", () => this.toggleTraffic());
    for (const sw of ["#drift-switch", "#missing-switch"]) {
      $(sw).addEventListener("change", () => {
        if (this.trafficRunning) this.startTraffic();
      });
    }
  }

  syncControls() {
    const d = this.app.settings.dashboard;
    for (const b of $$("[data-range]")) b.setAttribute("aria-pressed", String(Number(b.dataset.range) === d.range_s));
    $("#pause").setAttribute("aria-pressed", String(d.paused));
    $("#pause").textContent = d.paused ? "Resume" : "Pause";
    const fleet = this.app.target === "sandbox-fleet";
    $("#traffic").hidden = this.app.target !== "sandbox" && !fleet;
    // The fleet's view: every host merged, or one host's own.
    $("#fleet-host-wrap").hidden = !fleet;
    const hosts = this.app.info.fleet?.hosts ?? [];
    if (fleet && $("#fleet-host").options.length !== hosts.length + 1) {
      $("#fleet-host").replaceChildren(
        el("option", { value: "fleet" }, "Every host (merged)"),
        ...hosts.map((h) => el("option", { value: h }, h)),
      );
      this.host = "fleet";
    }
  }

  async show() {
    this.visible = true;
    this.syncControls();
    await Promise.all([this.refresh(), this.trafficStatus()]);
    this.schedule();
  }

  hide() {
    this.visible = false;
    clearTimeout(this.timer);
  }

  schedule() {
    clearTimeout(this.timer);
    if (!this.visible) return;
    this.timer = setTimeout(async () => {
      if (!this.app.settings.dashboard.paused) await Promise.all([this.refresh(), this.trafficStatus()]);
      this.schedule();
    }, REFRESH_MS);
  }

  async refresh() {
    if (this.inflight) return;
    this.inflight = true;
    const d = this.app.settings.dashboard;
    try {
      const data = await call("dashboard", {
        target: this.app.target,
        rangeS: d.range_s,
        utcOffsetS: -new Date().getTimezoneOffset() * 60,
        feature: d.feature ?? null,
        host: this.app.target === "sandbox-fleet" ? this.host ?? "fleet" : null,
      });
      $("#dash-error").hidden = true;
      this.render(data);
    } catch (e) {
      const box = $("#dash-error");
      box.textContent = e.message;
      box.hidden = false;
    } finally {
      this.inflight = false;
    }
  }

  render(data) {
    $("#refreshed").textContent = `updated ${clock(Date.now())} · ${Math.round(data.fetch_ms + data.draw_ms)} ms`;
    const alerts = data.alerts.map((a) => el("li", { class: a.level }, `${a.layer}: ${a.text}`));
    $("#alerts").replaceChildren(...alerts);
    this.app.setAlerts(data.alerts);
    $("#kpis").replaceChildren(
      ...data.tiles.map((t) => el("div", {}, el("dt", {}, t.label), el("dd", {}, t.value ?? "–"))),
    );
    $("#task-label").textContent = TASK_LABELS[data.task] ?? data.task;
    this.renderClasses(data.classes, data.calibration);
    for (const layer of ["system", "data", "model"]) {
      const figs = data.charts
        .filter((c) => c.layer === layer)
        .map((c) =>
          el("figure", { class: "chart", "data-chart": c.id },
            el("figcaption", {}, c.title, el("span", {}, c.latest ?? "")),
            svgImage(c.svg, c.title)),
        );
      $(`.charts[data-layer="${layer}"]`).replaceChildren(...figs);
    }
    const sel = $("#feature");
    if (sel.options.length !== data.features.length) {
      sel.replaceChildren(...data.features.map((f) => el("option", { value: f }, f)));
    }
    if (data.feature) sel.value = data.feature;
    const v = $("#drift-verdict");
    v.className = `badge ${data.drift_verdict}`;
    v.textContent = `input: ${verdictLabel(data.drift_verdict)}`;
    $("#drift-table tbody").replaceChildren(
      ...data.drift.map((r) =>
        el("tr", { "data-feature": r.feature },
          el("th", { scope: "row" }, r.feature),
          el("td", { class: "num" }, r.rows),
          el("td", { class: "num" }, fixed(r.psi)),
          el("td", { class: "num" }, pValue(r.ks_p_value)),
          el("td", { class: "num" }, fixed(r.wasserstein_scaled, 2)),
          el("td", { class: "num" }, r.missing),
          el("td", { class: "num" }, r.invalid),
          el("td", {}, el("span", { class: `badge ${r.verdict}` }, verdictLabel(r.verdict)))),
      ),
    );
  }

  renderClasses(classes, calibration) {
    const share = (v) => (v == null ? "–" : percent(v));
    $("#class-table").hidden = !classes.length;
    $("#class-table tbody").replaceChildren(
      ...classes.map((c) =>
        el("tr", { "data-class": c.class },
          el("th", { scope: "row" }, c.class),
          el("td", { class: "num" }, c.predicted),
          el("td", { class: "num" }, share(c.live_share)),
          el("td", { class: "num" }, share(c.baseline_share)),
          el("td", { class: "num" }, c.support ?? "–"),
          el("td", { class: "num" }, share(c.precision)),
          el("td", { class: "num" }, share(c.recall)),
          el("td", { class: "num" }, fixed(c.f1, 3)))),
    );
    const bins = Array.isArray(calibration) ? calibration.filter((b) => b.rows > 0) : [];
    $("#calibration-table").hidden = !bins.length;
    $("#calibration-table tbody").replaceChildren(
      ...bins.map((b) =>
        el("tr", {},
          el("th", { scope: "row" }, `${percent(b.from)}–${percent(b.to)}`),
          el("td", { class: "num" }, b.rows),
          el("td", { class: "num" }, share(b.confidence)),
          el("td", { class: "num" }, share(b.accuracy)))),
    );
  }

  async trafficStatus() {
    if (this.app.target !== "sandbox") return;
    try {
      this.showTraffic(await call("traffic_status"));
    } catch (e) {
      $("#traffic-state").textContent = e.message;
    }
  }

  showTraffic(s) {
    this.trafficRunning = s.running;
    $("#traffic-toggle").textContent = s.running ? "Stop traffic" : "Start traffic";
    $("#traffic-state").textContent = s.running
      ? `replaying ${s.scenario} at ${s.rate}/s`
      : s.stopped ? `replay stopped: ${s.stopped}` : "no traffic";
  }

  async startTraffic() {
    try {
      this.showTraffic(await call("traffic_start", {
        drift: $("#drift-switch").checked,
        missing: $("#missing-switch").checked,
        rate: 20,
        target: this.app.target,
      }));
    } catch (e) {
      toast(e.message, true);
    }
  }

  async toggleTraffic() {
    if (this.trafficRunning) {
      try {
        this.showTraffic(await call("traffic_stop"));
      } catch (e) {
        toast(e.message, true);
      }
    } else {
      await this.startTraffic();
    }
  }
}
