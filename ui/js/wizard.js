// The deployment wizard: credentials → platform → provision → GitHub → deploy → verify. Each step
// checks before moving on; the step and the choices are saved, so a reopened app resumes here.

import { call, onProvision } from "./api.js";
import { $, $$, confirmDialog, el, toast } from "./dom.js";
import { PLATFORMS, advise, checkRemote, fixed, ownModelRequest, stepNote, targetOf } from "./format.js";
import { ProgressView, track } from "./progress.js";

const LAST = 5;

/** Clears the Provision step's log, shows it with `first` and returns a function adding a line. */
function provisionLog(first) {
  const log = $("#provision-log");
  const say = (line) => {
    log.textContent += `${line}\n`;
    log.scrollTop = log.scrollHeight;
  };
  log.hidden = false;
  log.textContent = "";
  say(first);
  return say;
}

export class Wizard {
  constructor(app) {
    this.app = app;
    this.progress = new ProgressView($("#wizard-progress"));
    track(this.progress);
    $("#wiz-back").addEventListener("click", () => this.go(this.step - 1));
    $("#wiz-next").addEventListener("click", () => this.next());
    for (const li of $$("#stepper li")) {
      li.querySelector("button").addEventListener("click", () => {
        const s = Number(li.dataset.step);
        if (s <= this.app.settings.wizard_step) this.go(s);
        else this.error("Finish the current step first.");
      });
    }
    $("#cred-kind").addEventListener("change", () => {
      $("#cred-host-wrap").hidden = $("#cred-kind").value !== "ssh-key";
    });
    $("#cred-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.saveCredential();
    });
    for (const r of $$('input[name="need"]')) {
      r.addEventListener("change", () => this.showAdvice(r.value));
    }
    $("#wizard-deploy").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.deploy();
    });
    for (const b of $$("[data-browse]")) b.addEventListener("click", () => this.browse(b.dataset.browse));
    $("#own-inspect").addEventListener("click", () => this.inspectOwn());
    $("#own-build").addEventListener("click", () => this.buildOwn());
    // A changed field makes the inspection shown stale: build only what is on screen.
    $("#own-form").addEventListener("input", () => {
      this.inspected = null;
      $("#own-build").disabled = true;
    });
  }

  get step() {
    return Math.min(this.app.settings.wizard_step, LAST);
  }

  error(text) {
    $("#wiz-error").textContent = text ?? "";
  }

  async show() {
    await this.go(this.step, false);
  }

  async go(step, save = true) {
    step = Math.max(0, Math.min(LAST, step));
    this.error("");
    if (save && step !== this.app.settings.wizard_step) {
      // Going back keeps later steps reachable; the saved step is the furthest one reached.
      const furthest = Math.max(step, Math.min(this.app.settings.wizard_step, 6));
      await this.app.patchSettings({ wizard_step: step > this.app.settings.wizard_step ? step : furthest });
    }
    this.current = step;
    for (const li of $$("#stepper li")) {
      const s = Number(li.dataset.step);
      li.classList.toggle("current", s === step);
      li.classList.toggle("done", s < this.app.settings.wizard_step && s !== step);
      li.querySelector("button").setAttribute("aria-current", s === step ? "step" : "false");
    }
    for (const p of $$(".panel[data-panel]")) p.hidden = Number(p.dataset.panel) !== step;
    $("#wiz-back").disabled = step === 0;
    $("#wiz-next").textContent = step === LAST ? "Open the dashboard" : "Next";
    await [this.showCredentials, this.showPlatform, this.showProvision, this.showGithub, this.showDeploy, this.showVerify][step].call(this);
  }

  async next() {
    this.error("");
    const s = this.current;
    try {
      const ok = await [this.leaveCredentials, this.leavePlatform, this.leaveProvision, this.leaveGithub, this.leaveDeploy, this.leaveVerify][s].call(this);
      if (!ok) return;
    } catch (e) {
      this.error(e.message);
      return;
    }
    if (s === LAST) {
      await this.app.patchSettings({ wizard_step: 6 });
      this.app.showView("dashboard");
      return;
    }
    const furthest = Math.max(this.app.settings.wizard_step, s + 1);
    await this.app.patchSettings({ wizard_step: furthest });
    await this.go(s + 1, false);
  }

  // ------------------------------------------------------------------ 1 credentials
  async showCredentials() {
    const aws = this.app.settings.aws;
    for (const r of $$('input[name="aws-mode"]')) r.checked = r.value === aws.mode;
    $("#aws-profile").value = aws.profile ?? "";
    $("#aws-region").value = aws.region;
    await this.listCredentials();
  }

  async listCredentials() {
    const tbody = $("#cred-table tbody");
    try {
      const stored = await call("credentials_list");
      tbody.replaceChildren(
        ...(stored.length
          ? stored.map((c) =>
              el("tr", {}, el("td", {}, c.label), el("td", {}, el("code", {}, c.name)),
                el("td", {},
                  el("button", { type: "button", onclick: () => this.replaceCredential(c.name) }, "Replace"), " ",
                  el("button", { type: "button", class: "danger-quiet", onclick: () => this.deleteCredential(c) }, "Delete"))))
          : [el("tr", {}, el("td", { colspan: 3, class: "muted" }, "Nothing stored yet."))]),
      );
    } catch (e) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "form-error" }, e.message)));
    }
  }

  replaceCredential(name) {
    const kind = name.startsWith("ssh-key/") ? "ssh-key" : name;
    $("#cred-kind").value = kind;
    $("#cred-host-wrap").hidden = kind !== "ssh-key";
    if (kind === "ssh-key") $("#cred-host").value = name.slice("ssh-key/".length);
    $("#cred-value").focus();
  }

  async deleteCredential(c) {
    try {
      await call("credential_delete", { name: c.name });
      toast(`${c.label} deleted from the keychain.`);
      await this.listCredentials();
    } catch (e) {
      toast(e.message, true);
    }
  }

  async saveCredential() {
    const kind = $("#cred-kind").value;
    const err = $("#cred-form .form-error");
    err.textContent = "";
    let name = kind;
    if (kind === "ssh-key") {
      const host = $("#cred-host").value.trim();
      if (!host) {
        err.textContent = "Name the host this key opens.";
        return;
      }
      name = `ssh-key/${host}`;
    }
    const value = $("#cred-value").value;
    if (!value.trim()) {
      err.textContent = "Paste the value to store.";
      return;
    }
    try {
      const s = await call("credential_save", { name, value });
      $("#cred-value").value = "";
      toast(`${s.label} saved to the keychain.`);
      await this.listCredentials();
    } catch (e) {
      err.textContent = e.message;
    }
  }

  async leaveCredentials() {
    const mode = $$('input[name="aws-mode"]').find((r) => r.checked)?.value ?? "default";
    const profile = $("#aws-profile").value.trim() || null;
    if (mode === "profile" && !profile) throw { message: "Name the AWS profile, or choose the credential chain." };
    await this.app.patchSettings({ aws: { mode, profile, region: $("#aws-region").value.trim() } });
    return true;
  }

  // ------------------------------------------------------------------ 2 platform
  showAdvice(need) {
    const a = advise(need);
    $("#advice").textContent = a ? a.text : "";
    if (a) this.pickPlatform(a.platform, false);
  }

  pickPlatform(id, save = true) {
    this.platform = id;
    for (const b of $$("#platforms .choice")) b.setAttribute("aria-checked", String(b.dataset.platform === id));
    const p = PLATFORMS.find((x) => x.id === id);
    let note = p && !p.deploys ? p.needs : "";
    if (id === "sandbox") note = this.app.info.sandbox.docker
      ? `Ready: ${this.app.info.sandbox.detail}. Images come from ${this.app.info.sandbox.image}, served on 127.0.0.1:${this.app.info.sandbox.port}.`
      : `No Docker here (${this.app.info.sandbox.detail}). The sandbox needs a running Docker engine and docker-compose to deploy containers; scripts/run.sh starts the service as a local process instead, which the Dashboard tab can watch.`;
    if (id === "fleet") note = this.app.info.sandbox.docker
      ? `Ready: ${this.app.info.sandbox.detail}. Three hosts (h1, h2, h3) of ${this.app.info.sandbox.image} on 127.0.0.1, behind HAProxy on 127.0.0.1:${this.app.info.fleet.front_port}; HAProxy must be installed (apt install haproxy).`
      : `No Docker here (${this.app.info.sandbox.detail}). The fleet's hosts are containers on this computer's Docker engine.`;
    $("#platform-note").textContent = note;
    $("#remote-form").hidden = id !== "ssh";
    if (save) this.app.patchSettings({ platform: id });
  }

  showPlatform() {
    $("#platforms").replaceChildren(
      ...PLATFORMS.map((p) =>
        el("button", {
          type: "button", role: "radio", class: `choice${p.deploys ? "" : " advisory"}`,
          "data-platform": p.id, "aria-checked": "false", onclick: () => this.pickPlatform(p.id),
        }, el("strong", {}, p.title), el("span", {}, p.blurb),
        p.deploys ? "" : el("span", { class: "badge neutral tag" }, "advice only")),
      ),
    );
    const r = this.app.settings.remote;
    if (r) for (const [k, v] of Object.entries(r)) {
      const input = $(`#remote-form [name="${k}"]`);
      if (input) input.value = v;
    }
    this.pickPlatform(this.app.settings.platform ?? null, false);
  }

  async leavePlatform() {
    const id = this.platform;
    if (!id) throw { message: "Choose where to deploy." };
    const p = PLATFORMS.find((x) => x.id === id);
    if (!p.deploys) throw { message: `${p.title}: ${p.needs} Choose this computer, an SSH host or EC2 to deploy from the console.` };
    if ((id === "sandbox" || id === "fleet") && !this.app.info.sandbox.docker) {
      throw { message: `The sandbox needs Docker: ${this.app.info.sandbox.detail}. Start Docker and reopen the console.` };
    }
    const patch = { platform: id };
    if (id === "ssh") {
      const form = Object.fromEntries(new FormData($("#remote-form")).entries());
      const { value, errors } = checkRemote(form);
      const first = Object.entries(errors)[0];
      if (first) {
        $(`#remote-form [name="${first[0]}"]`).focus();
        throw { message: first[1] };
      }
      patch.remote = value;
    }
    await this.app.patchSettings(patch);
    this.app.setTarget(targetOf(id));
    return true;
  }

  // ------------------------------------------------------------------ 3 provision
  showProvision() {
    const body = $("#provision-body");
    const note = stepNote(2, this.app.settings.platform);
    if (note) {
      body.replaceChildren(el("p", { class: "note" }, note));
      return;
    }
    const e = this.app.settings.ec2;
    const r = this.app.settings.remote;
    body.replaceChildren(
      el("form", { id: "ec2-form", class: "form two" },
        el("label", {}, "Region", el("input", { name: "region", value: this.app.settings.aws.region })),
        el("label", {}, "Name (tags every resource)", el("input", { name: "name", value: e.name })),
        el("label", {}, "Instance type",
          el("select", { name: "instance_type" }, ...["t3.micro", "t3.small", "t3.medium", "t2.micro", "t2.small"].map((t) =>
            el("option", { value: t, selected: t === e.instance_type }, t)))),
        el("label", {}, "Disk (GiB, gp3)", el("input", { name: "disk_gib", type: "number", min: 8, max: 1024, value: e.disk_gib })),
        el("label", {}, "Who may SSH in (CIDR)", el("input", { name: "ssh_cidr", value: e.ssh_cidr ?? "", placeholder: "detected when empty" })),
        el("label", { class: "inline" }, el("input", { name: "open_service_port", type: "checkbox", checked: e.open_service_port }), "Also open the service port (the console itself uses an SSH tunnel)"),
        el("label", { class: "inline" }, el("input", { name: "allow_anywhere", type: "checkbox" }), "I accept SSH from anywhere (0.0.0.0/0) if I typed it"),
        el("label", { class: "wide" }, "Alert e-mails (CloudWatch alarms; comma-separated, AWS mails each a confirmation link)",
          el("input", { name: "alert_emails", id: "alert-emails", type: "text", value: (e.alert_emails || []).join(", "), placeholder: "oncall@example.com" })),
      ),
      el("div", { class: "row" },
        el("button", { type: "button", class: "primary", id: "provision-run", onclick: () => this.provision() }, r ? "Check / re-run provisioning" : "Provision"),
        el("button", { type: "button", class: "danger", id: "teardown-run", hidden: !e.instance_id, onclick: () => this.teardown() }, "Tear down…")),
      el("form", { id: "teardown-confirm", class: "form", hidden: true, onsubmit: (ev) => { ev.preventDefault(); this.teardown(true); } },
        el("label", {}, `Type the stack's name (${e.name}) to terminate its instance and delete its volume, security group, key pair, IAM role, alarms and alert topic`,
          el("input", { name: "confirm", id: "teardown-name", autocomplete: "off" })),
        el("div", { class: "row" }, el("button", { type: "submit", class: "danger", id: "teardown-go" }, "Tear down the stack"))),
      el("pre", { class: "log", id: "provision-log", hidden: !r, tabindex: 0 }, r ? `Host ${r.host}, host key ${r.fingerprint || "not pinned yet"}` : ""),
    );
  }

  /** Shows the typed-name confirmation, then (confirmed) removes the whole stack. */
  async teardown(confirmed = false) {
    const form = $("#teardown-confirm");
    if (!confirmed) {
      form.hidden = false;
      $("#teardown-name").focus();
      return;
    }
    const say = provisionLog("Tearing down…");
    this.error("");
    $("#teardown-go").disabled = true;
    const stop = await onProvision((m) => say(`· ${m}`));
    try {
      const done = await call("teardown_ec2", { name: $("#teardown-name").value.trim() });
      for (const r of done.removed) say(`removed ${r}`);
      say("The stack is gone.");
      form.hidden = true;
      $("#teardown-run").hidden = true;
      await this.app.reloadSettings();
    } catch (e) {
      say(e.message);
      this.error(e.message);
    } finally {
      stop();
      $("#teardown-go").disabled = false;
    }
  }

  async provision() {
    const f = Object.fromEntries(new FormData($("#ec2-form")).entries());
    const button = $("#provision-run");
    const say = provisionLog("Provisioning…");
    this.error("");
    // One run at a time: the button waits for this one; progress lines arrive as they happen.
    button.disabled = true;
    const stop = await onProvision((m) => say(`· ${m}`));
    try {
      const host = await call("provision_ec2", {
        request: {
          region: f.region, name: f.name, instance_type: f.instance_type, disk_gib: Number(f.disk_gib),
          ssh_cidr: f.ssh_cidr || null, open_service_port: f.open_service_port === "on", allow_anywhere: f.allow_anywhere === "on",
          alert_emails: (f.alert_emails || "").split(",").map((x) => x.trim()).filter(Boolean),
        },
      });
      say(`Ready: ${host.instance_id} at ${host.host}`);
      say(`CloudWatch alarms: ${host.alarms.length} on the host now; the service's follow its first deploy`);
      $("#teardown-run").hidden = false;
      say(host.fingerprint ? `Host key pinned: ${host.fingerprint}` : "Host key not pinned yet: run provisioning again in a minute.");
      for (const w of host.warnings) say(`warning: ${w}`);
      await this.app.reloadSettings();
      await this.app.refreshServing();
    } catch (e) {
      say(e.message);
      this.error(e.message);
    } finally {
      stop();
      button.disabled = false;
    }
  }

  async leaveProvision() {
    if (this.app.settings.platform !== "ec2") return true;
    const r = this.app.settings.remote;
    if (!r) throw { message: "Provision the host first: the next steps need its address and pinned host key." };
    if (!r.fingerprint) throw { message: `The host key of ${r.host} is not pinned yet: cloud-init prints it to the console a minute or two after boot. Run provisioning again (it creates nothing new) to pin it.` };
    return true;
  }

  // ------------------------------------------------------------------ 4 GitHub
  showGithub() {
    const body = $("#github-body");
    const note = stepNote(3, this.app.settings.platform);
    if (note) {
      body.replaceChildren(el("p", { class: "note" }, note));
      return;
    }
    const g = this.app.settings.github;
    body.replaceChildren(
      el("p", { class: "hint" }, "Writes the repository secrets EC2_HOST, EC2_USER, EC2_SSH_KEY, DOCKER_COMPOSE_DIR and GHCR_PAT (sealed with the repository's public key), pins the host key in the variable EC2_HOST_FINGERPRINT, and installs the deploy workflow when it is missing. Optional: you can also deploy directly over SSH."),
      el("form", { id: "gh-form", class: "form two" },
        el("label", {}, "Repository (owner/name)", el("input", { name: "repo", value: g.repo ?? "", autocomplete: "off" })),
        el("label", {}, "Branch", el("input", { name: "branch", value: g.branch }))),
      el("div", { class: "row" },
        el("button", { type: "button", onclick: () => this.githubCheck() }, "Check the workflow"),
        el("button", { type: "button", class: "primary", onclick: () => this.githubConfigure() }, "Write secrets and workflow")),
      el("pre", { class: "log", id: "gh-log", hidden: true, tabindex: 0 }),
      el("div", { class: "row", id: "gh-replace-row", hidden: true },
        el("button", { type: "button", id: "gh-replace", onclick: () => this.githubReplace() }, "Replace it with the console's workflow")),
    );
  }

  githubForm() {
    const f = Object.fromEntries(new FormData($("#gh-form")).entries());
    return { repo: f.repo.trim(), branch: f.branch.trim() || "main" };
  }

  async githubCheck() {
    const log = $("#gh-log");
    log.hidden = false;
    try {
      const s = await call("github_workflow_status", this.githubForm());
      log.textContent = s.state === "outdated" ? `The repository's workflow differs from the console's:\n${s.diff}` : `Workflow: ${s.state}.`;
      // Replacing is offered for exactly the version whose difference is on screen.
      this.shownSha = s.state === "outdated" ? s.sha : null;
      $("#gh-replace-row").hidden = !this.shownSha;
    } catch (e) {
      log.textContent = e.message;
    }
  }

  async githubReplace() {
    if (!this.shownSha) return;
    const form = this.githubForm();
    const ok = await confirmDialog(
      "Replace the repository's deploy workflow?",
      `.github/workflows/deploy.yml in ${form.repo} (${form.branch}) becomes the console's version, as a commit; the difference is shown above. If the file changed since, nothing is written.`,
      "Replace the workflow",
    );
    if (!ok) return;
    const log = $("#gh-log");
    try {
      const r = await call("github_install_workflow", { ...form, sha: this.shownSha });
      log.textContent = `workflow .github/workflows/deploy.yml: ${r}`;
    } catch (e) {
      log.textContent = e.message;
    }
    this.shownSha = null;
    $("#gh-replace-row").hidden = true;
  }

  async githubConfigure() {
    const log = $("#gh-log");
    log.hidden = false;
    log.textContent = "Writing…";
    try {
      const r = await call("github_configure", this.githubForm());
      log.textContent = r.lines.join("\n");
      $("#gh-replace-row").hidden = true;
      await this.app.reloadSettings();
    } catch (e) {
      log.textContent = e.message;
    }
  }

  leaveGithub() {
    return true;
  }

  // ------------------------------------------------------------------ 5 deploy
  async showDeploy() {
    const fleet = this.app.target === "sandbox-fleet";
    const remote = this.app.target === "remote";
    const github = remote && this.app.settings.github?.configured;
    $("#deploy-hint").textContent = fleet
      ? "Deploys one of the images built on this computer to the three hosts one at a time: each is drained in HAProxy, deployed and gated like a single host, then put back once HAProxy sees it healthy. A host that fails stops the rollout and every host already moved returns to the version it served. The Deployments tab follows the rollout host by host and offers canary deploys."
      : !remote
      ? "Deploys one of the images built on this computer. The new version is tried beside the serving one first, then switched in; if it does not become ready the last healthy version comes back by itself."
      : `Deploys over SSH: pull ${this.app.settings.remote?.image ?? "the image"}:<tag> on the host, try the new version beside the serving one, switch, gate on /readyz. Pick a tag (the ones deployed before come first, then the registry's), or type one.`
        + (github ? ` Or through GitHub Actions: the console dispatches ${this.app.settings.github.repo}'s deploy workflow, follows its run step by step and shows its job log, then gates the result from here.` : "");
    // A remote host has no versions listed until one is deployed: its tags are typed in.
    $("#wizard-custom-wrap").hidden = !remote;
    $("#wizard-via-github-wrap").hidden = !github;
    // An own model is built into this computer's Docker engine, where the sandbox deploys from.
    $("#own-model").hidden = remote;
    await this.app.deployments.loadImages($("#wizard-tag"));
  }

  // ------------------------------------------------------------------ 5 deploy: your own model
  async browse(field) {
    const filters = field === "model"
      ? [{ name: "ONNX model", extensions: ["onnx"] }]
      : [{ name: "CSV", extensions: ["csv"] }];
    try {
      // The native file dialog (Tauri's dialog plugin); the path can also be typed.
      const path = await call("plugin:dialog|open", { options: { multiple: false, directory: false, filters } });
      if (typeof path === "string" && path) {
        const input = $(`#own-form [name="${field}"]`);
        input.value = path;
        input.dispatchEvent(new Event("input", { bubbles: true }));
      }
    } catch (e) {
      $("#own-error").textContent = `The file dialog could not open (${e.message}); type the path instead.`;
    }
  }

  async inspectOwn() {
    const err = $("#own-error");
    err.textContent = "";
    const { value, errors } = ownModelRequest(Object.fromEntries(new FormData($("#own-form")).entries()));
    const first = Object.entries(errors)[0];
    if (first) {
      $(`#own-form [name="${first[0]}"]`).focus();
      err.textContent = first[1];
      return;
    }
    const result = $("#own-result");
    result.replaceChildren(el("p", { class: "muted" }, "Reading the graph and the reference rows…"));
    $("#own-inspect").disabled = true;
    try {
      const i = await call("own_model_inspect", { request: value });
      this.inspected = i;
      result.replaceChildren(this.describeOwn(i));
      $("#own-build").disabled = false;
    } catch (e) {
      this.inspected = null;
      result.replaceChildren();
      err.textContent = e.message;
    } finally {
      $("#own-inspect").disabled = false;
    }
  }

  describeOwn(i) {
    const shown = i.features.slice(0, 12).join(", ") + (i.features.length > 12 ? `, … (${i.features.length - 12} more)` : "");
    const metrics = Object.entries(i.evaluation)
      .filter(([, v]) => typeof v === "number")
      .map(([k, v]) => `${k.replace(/^holdout_/, "").replaceAll("_", " ")} ${Number.isInteger(v) ? v : fixed(v, 4)}`);
    const rows = [
      ["Found", i.summary],
      ["Task", i.task],
      ["Features", `${i.features.length}: ${shown}`],
    ];
    if (i.classes.length) rows.push(["Classes", i.classes.join(", ")]);
    if (i.threshold != null) rows.push([i.task === "autoencoder" ? "Anomaly threshold" : "Decision threshold", fixed(i.threshold, 4)]);
    rows.push(["Missing values", i.missing_policy.replace("_", "-")]);
    rows.push(["Held out", metrics.length ? metrics.join(" · ") : "no holdout given"]);
    rows.push(["Image tag", i.tag]);
    return el("dl", { class: "card", id: "own-card" }, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)]));
  }

  async buildOwn() {
    const i = this.inspected;
    if (!i) return;
    const err = $("#own-error");
    err.textContent = "";
    const button = $("#own-build");
    button.disabled = true;
    button.textContent = "Building…";
    try {
      const said = await call("own_model_build", { tag: i.tag });
      toast(said);
      if (this.app.target === "remote") {
        // The remote host pulls from its registry: the image goes there first.
        button.textContent = "Pushing…";
        toast(await call("own_model_push", { tag: i.tag }));
      }
      await this.app.deployments.loadImages($("#wizard-tag"));
      $("#wizard-tag").value = i.tag;
    } catch (e) {
      err.textContent = e.message;
    } finally {
      button.textContent = "Build the image";
      button.disabled = !this.inspected;
    }
  }

  async deploy() {
    const custom = $("#wizard-custom-wrap").hidden ? "" : $("#wizard-custom").value.trim();
    const viaGithub = !$("#wizard-via-github-wrap").hidden && $("#wizard-via-github").checked;
    const rec = await this.app.deployments.deploy(custom || $("#wizard-tag").value, this.progress, viaGithub);
    if (rec && rec.status === "succeeded") this.error("");
  }

  async leaveDeploy() {
    const h = await call("history_list", { target: this.app.target });
    if (!h.serving) throw { message: "Deploy a version first: nothing is serving on this target yet." };
    return true;
  }

  // ------------------------------------------------------------------ 6 verify
  async showVerify() {
    const body = $("#verify-body");
    body.replaceChildren(el("p", { class: "muted" }, "Checking the serving version…"));
    try {
      const v = await call("service_verify", { target: this.app.target });
      const card = v.model.card ?? {};
      body.replaceChildren(
        el("p", { class: `outcome ${v.ready ? "ok" : "bad"}` }, v.ready ? `Ready: /readyz answered in ${v.ready_ms.toFixed(0)} ms.` : `Not ready: ${v.detail}`),
        el("dl", { class: "card" },
          el("dt", {}, "Image tag"), el("dd", {}, v.model.image_tag ?? "–"),
          el("dt", {}, "Model"), el("dd", {}, `${v.model.name} ${v.model.version}`),
          el("dt", {}, "Features"), el("dd", {}, String((card.features ?? []).length)),
          el("dt", {}, "Task"), el("dd", {}, card.task ?? "autoencoder"),
          el("dt", {}, "Threshold"), el("dd", {}, String(card.score?.threshold ?? "–")),
          el("dt", {}, card.task === "regressor" ? "Held-out MAE" : card.task === "classifier" ? "Held-out accuracy" : "Held-out ROC-AUC"),
          el("dd", {}, String((card.task === "regressor" ? card.evaluation?.holdout_mae : card.task === "classifier" ? card.evaluation?.holdout_accuracy : card.evaluation?.holdout_roc_auc) ?? "–")),
          el("dt", {}, "Service"), el("dd", {}, `${v.model.service_version ?? ""} ${v.model.git_revision ?? ""}`)),
      );
    } catch (e) {
      body.replaceChildren(el("p", { class: "form-error" }, e.message));
    }
  }

  leaveVerify() {
    return true;
  }
}
