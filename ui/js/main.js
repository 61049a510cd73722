// Boots the page: reads the app's state, resumes the wizard or opens the dashboard, and keeps the
// header (target, serving version, alerts) current.

import { call } from "./api.js";
import { $, $$, toast } from "./dom.js";
import { Alerts } from "./alerts.js";
import { Dashboard } from "./dashboard.js";
import { Deployments } from "./deployments.js";
import { Wizard } from "./wizard.js";

const SCRIPT_AT = Date.now();

class App {
  async start() {
    this.info = await call("app_info");
    this.settings = this.info.settings;
    this.target = this.settings.dashboard.target;
    $("#target").value = this.target;
    this.deployments = new Deployments(this);
    this.dashboard = new Dashboard(this);
    this.wizard = new Wizard(this);
    this.alerts = new Alerts(this);
    for (const b of $$(".tabs [role=tab]")) {
      b.addEventListener("click", () => this.showView(b.dataset.view));
      b.addEventListener("keydown", (ev) => this.tabKeys(ev));
    }
    $("#target").addEventListener("change", (ev) => this.setTarget(ev.target.value));
    await this.refreshServing();
    await this.showView(this.settings.wizard_step >= 6 ? "dashboard" : "setup");
    document.body.dataset.readyAt = String(Date.now());
    // For the start-up benchmark: when the page began loading, and when this script first ran.
    document.body.dataset.navAt = String(Math.round(performance.timeOrigin));
    document.body.dataset.scriptAt = String(SCRIPT_AT);
    document.body.dataset.ready = "true";
  }

  tabKeys(ev) {
    const tabs = $$(".tabs [role=tab]");
    const i = tabs.indexOf(ev.target);
    const j = ev.key === "ArrowRight" ? (i + 1) % tabs.length : ev.key === "ArrowLeft" ? (i + tabs.length - 1) % tabs.length : -1;
    if (j >= 0) {
      tabs[j].focus();
      this.showView(tabs[j].dataset.view);
    }
  }

  async showView(name) {
    this.view = name;
    for (const b of $$(".tabs [role=tab]")) {
      const on = b.dataset.view === name;
      b.setAttribute("aria-selected", String(on));
      b.tabIndex = on ? 0 : -1;
    }
    for (const v of $$(".view")) v.hidden = v.id !== `view-${name}`;
    if (name !== "dashboard") this.dashboard.hide();
    if (name !== "alerts") this.alerts.hide();
    if (name !== "deployments") this.deployments.hide();
    if (name === "setup") await this.wizard.show();
    if (name === "dashboard") await this.dashboard.show();
    if (name === "deployments") await this.deployments.show();
    if (name === "alerts") await this.alerts.show();
  }

  /** Saves a part of the settings (the app checks and keeps them). */
  async patchSettings(patch) {
    const next = { ...this.settings, ...patch };
    try {
      this.settings = await call("settings_save", { settings: next });
    } catch (e) {
      toast(e.message, true);
      throw e;
    }
  }

  async reloadSettings() {
    this.info = await call("app_info");
    this.settings = this.info.settings;
  }

  async setTarget(t) {
    this.target = t;
    $("#target").value = t;
    await this.patchSettings({ dashboard: { ...this.settings.dashboard, target: t } });
    await this.refreshServing();
    if (this.view === "dashboard") await this.dashboard.show();
    if (this.view === "deployments") await this.deployments.show();
    if (this.view === "alerts") await this.alerts.show();
  }

  async refreshServing() {
    const badge = $("#serving");
    try {
      const h = await call("history_list", { target: this.target });
      badge.textContent = h.serving ? `serving ${h.serving.tag}` : "nothing serving";
      badge.className = `badge ${h.serving ? "ok" : "neutral"}`;
    } catch (e) {
      badge.textContent = e.code === "no-remote" ? "no remote host" : "unknown";
      badge.className = "badge neutral";
    }
  }

  setAlerts(alerts) {
    const b = $("#alert-count");
    b.hidden = alerts.length === 0;
    const critical = alerts.some((a) => a.level === "critical");
    b.className = `badge ${critical ? "critical" : "warning"}`;
    b.textContent = `${alerts.length} alert${alerts.length === 1 ? "" : "s"}`;
  }
}

new App().start().catch((e) => {
  document.body.dataset.ready = "error";
  toast(e.message ?? String(e), true);
});
