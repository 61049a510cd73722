// The Alerts page: the serving version's rules and their state, 7 days of firings (table and
// timeline), the webhook URL (kept in the keychain). A background poll, while the app is open,
// asks the app to show a desktop notification for each new firing.

import { call } from "./api.js";
import { $, el, svgImage, toast } from "./dom.js";
import { ago, clock, dashboardRangeFor } from "./format.js";
import { collectRules, editorRows, VERDICTS } from "./rule_edit.js";

const REFRESH_MS = 15_000;
const NOTIFY_POLL_MS = 30_000;

const offset = () => -new Date().getTimezoneOffset() * 60;
const when = (s) => `${new Date(s * 1000).toLocaleDateString(undefined, { month: "short", day: "numeric" })} ${clock(s * 1000)}`;

export class Alerts {
  constructor(app) {
    this.app = app;
    this.timer = null;
    this.visible = false;
    // Firings after this (unix seconds) are notified; the app's start is the first "last look".
    this.seen = Math.floor(Date.now() / 1000);
    $("#webhook-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.saveWebhook($("#webhook-url").value);
    });
    $("#webhook-remove").addEventListener("click", () => this.saveWebhook(""));
    this.definitions = [];
    $("#rules-edit").addEventListener("click", () => this.openEditor());
    $("#rules-cancel").addEventListener("click", () => ($("#rules-editor").hidden = true));
    $("#rules-editor").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const { rules, error } = collectRules(this.editing, this.readEditor());
      if (error) $("#rules-editor .form-error").textContent = error;
      else this.saveRules(rules);
    });
    $("#rules-defaults").addEventListener("click", () => this.saveRules(null));
    this.poll();
  }

  /** Opens the editor on the rules in force now. */
  openEditor() {
    this.editing = this.definitions;
    $("#rules-editor .form-error").textContent = "";
    const input = (attrs) => el("input", attrs);
    $("#rules-edit-table tbody").replaceChildren(
      ...editorRows(this.editing).map((r) =>
        el("tr", { "data-rule": r.id },
          el("td", {}, input({ type: "checkbox", class: "rule-keep", checked: r.keep, "aria-label": `Keep ${r.id}` })),
          el("td", {}, input({ type: "text", class: "rule-title", value: r.title, "aria-label": `Title of ${r.id}` })),
          el("td", {}, el("code", {}, `${r.metric} ${r.op}`)),
          el("td", {}, r.verdict
            ? el("select", { class: "rule-threshold", "aria-label": `Verdict of ${r.id}` },
                ...VERDICTS.map((v) => el("option", { value: v, selected: v === r.threshold }, v)))
            : input({ type: "text", class: "rule-threshold", value: r.threshold, inputmode: "decimal", "aria-label": `Threshold of ${r.id}` })),
          el("td", {}, input({ type: "number", class: "rule-window", min: 1, max: 1440, step: 1, value: r.window, "aria-label": `Window of ${r.id}` })),
          el("td", {}, el("select", { class: "rule-severity", "aria-label": `Severity of ${r.id}` },
            ...["warning", "critical"].map((v) => el("option", { value: v, selected: v === r.severity }, v)))))),
    );
    $("#rules-editor").hidden = false;
  }

  readEditor() {
    return [...$("#rules-edit-table tbody").querySelectorAll("tr")].map((tr) => ({
      id: tr.dataset.rule,
      keep: tr.querySelector(".rule-keep").checked,
      title: tr.querySelector(".rule-title").value,
      threshold: tr.querySelector(".rule-threshold").value,
      verdict: tr.querySelector(".rule-threshold").tagName === "SELECT",
      window: tr.querySelector(".rule-window").value,
      severity: tr.querySelector(".rule-severity").value,
    }));
  }

  /** Sends the rules (null: the model's defaults) to the serving version, which checks them. */
  async saveRules(rules) {
    const err = $("#rules-editor .form-error");
    err.textContent = "";
    try {
      const n = await call("alert_rules_save", { target: this.app.target, rules });
      $("#rules-editor").hidden = true;
      toast(rules ? `${n} alert rules in force and kept for this target.` : `The model's ${n} default rules are in force again.`);
      await this.refresh();
    } catch (e) {
      err.textContent = e.message;
      if ($("#rules-editor").hidden) toast(e.message, true);
    }
  }

  async saveWebhook(url) {
    const err = $("#webhook-form .form-error");
    err.textContent = "";
    try {
      const stored = await call("alert_webhook_save", { target: this.app.target, url });
      $("#webhook-url").value = "";
      this.showWebhookState(stored);
      toast(stored ? "Webhook saved to the keychain; the service gets it at its next deploy." : "Webhook removed; the next deploy runs without it.");
      await this.refresh();
    } catch (e) {
      err.textContent = e.message;
    }
  }

  showWebhookState(stored) {
    $("#webhook-state").textContent = stored
      ? "A webhook URL is in the keychain for this target (not shown). Deploy again for a change to reach the service."
      : "No webhook URL stored for this target: firings stay on this page and the service's API.";
  }

  async show() {
    this.visible = true;
    await this.refresh();
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
      await this.refresh();
      this.schedule();
    }, REFRESH_MS);
  }

  /** Fetches the page; with `notify`, new firings since the last look become notifications. */
  async fetch(notify) {
    const page = await call("alerts", {
      target: this.app.target,
      utcOffsetS: offset(),
      notifyAfter: notify ? this.seen : null,
    });
    for (const n of page.notices) this.seen = Math.max(this.seen, n.at);
    if (page.notices.length) {
      document.body.dataset.notified = String(Number(document.body.dataset.notified ?? 0) + page.notices.length);
      toast(page.notices.map((n) => n.title).join(" · "), true);
    }
    if (page.notify_error) document.body.dataset.notifyError = page.notify_error;
    return page;
  }

  async poll() {
    try {
      const page = await this.fetch(true);
      if (this.visible) this.render(page);
    } catch {
      // Nothing serving (or the host unreachable): the page says so when opened.
    }
    setTimeout(() => this.poll(), NOTIFY_POLL_MS);
  }

  async refresh() {
    try {
      this.render(await this.fetch(true));
      $("#alerts-error").hidden = true;
    } catch (e) {
      const box = $("#alerts-error");
      box.textContent = e.message;
      box.hidden = false;
    }
  }

  render(p) {
    const d = p.delivery;
    $("#alerts-summary").textContent =
      `${p.firing_now} firing of ${p.rules.length} rules · ` +
      (d.configured
        ? `webhook: ${d.delivered} delivered, ${d.failed} failed attempts, ${d.queued} queued${d.dropped ? `, ${d.dropped} dropped` : ""}`
        : "the serving version has no webhook");
    this.showWebhookState(p.webhook_stored);
    this.definitions = p.definitions;
    $("#rules-source").textContent =
      p.rules_source === "api" ? (p.rules_kept ? "Your rules, kept for this target." : "Rules set on the service (not kept by this console).")
        : p.rules_source === "file" ? "Rules from the service's --alert-rules file."
          : "The model's default rules.";
    // Nothing to restore while the model's own rules are in force.
    $("#rules-defaults").disabled = p.rules_source === "defaults" && !p.rules_kept;
    const re = $("#rules-error");
    re.textContent = p.rules_error ?? "";
    re.hidden = !p.rules_error;
    const cw = $("#alerts-cloudwatch");
    const c = p.cloudwatch;
    cw.hidden = !c;
    if (c) {
      cw.textContent = c.error
        ? `CloudWatch alarms: ${c.error}`
        : `CloudWatch alarms: ${c.alarms.length} (version ${c.version || "none yet"}), mailing ${c.emails.length ? c.emails.join(", ") : "nobody: add addresses in the Provision step"}`;
    }
    $("#alert-rules tbody").replaceChildren(
      ...p.rules.map((r) =>
        el("tr", { "data-rule": r.id },
          el("td", {}, r.title),
          el("td", {}, el("span", { class: `badge ${r.severity}` }, r.severity)),
          el("td", {}, el("code", {}, r.condition)),
          el("td", {}, el("span", { class: `badge ${r.state === "firing" ? r.severity : r.state === "ok" ? "ok" : "neutral"}` }, r.state)),
          el("td", {}, ago(r.since * 1000)),
          el("td", { class: "num" }, r.value ?? "–"))),
    );
    const fig = $("#alert-timeline");
    fig.replaceChildren(fig.querySelector("figcaption"), svgImage(p.timeline_svg, "Alert firings over the last 7 days, one lane per rule"));
    const now = Date.now() / 1000;
    $("#alert-firings tbody").replaceChildren(
      ...(p.firings.length ? p.firings.map((f) => {
        const range = dashboardRangeFor(f.from, now);
        return el("tr", { "data-firing": f.rule },
          el("td", {}, f.title),
          el("td", {}, el("span", { class: `badge ${f.severity}` }, f.severity)),
          el("td", {}, when(f.from)),
          el("td", {}, f.to == null ? el("span", { class: `badge ${f.severity}` }, "firing") : when(f.to)),
          el("td", { class: "num" }, f.value),
          el("td", {}, f.model_version),
          el("td", {}, range
            ? el("button", { type: "button", onclick: () => this.showOnCharts(range) }, "On the charts")
            : el("span", { class: "hint" }, "older than the charts keep")));
      }) : [el("tr", {}, el("td", { colspan: 7 }, "No firing in the last 7 days."))]),
    );
  }

  async showOnCharts(range) {
    await this.app.patchSettings({ dashboard: { ...this.app.settings.dashboard, range_s: range } });
    await this.app.showView("dashboard");
  }
}
