// Pure helpers for the page: formatting, the platform advisor, form checks, and the reducer that
// turns engine events into a progress view. No DOM here, so `node --test` covers it all.

export function pad2(n) {
  return String(n).padStart(2, "0");
}

/** "14:05:09" in the viewer's time zone. */
export function clock(ms) {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** "just now", "5 min ago", "3 h ago", "2 d ago". */
export function ago(ms, now = Date.now()) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function seconds(s) {
  if (s == null || !Number.isFinite(s)) return "";
  return s < 10 ? `${s.toFixed(1)} s` : `${Math.round(s)} s`;
}

export function fixed(v, digits = 3) {
  return v == null || !Number.isFinite(v) ? "–" : v.toFixed(digits);
}

export function percent(v) {
  if (v == null || !Number.isFinite(v)) return "–";
  return `${(v * 100).toFixed(v !== 0 && Math.abs(v) < 0.1 ? 1 : 0)}%`;
}

/** The own-model form's fields as `own_model_inspect` takes them, or the first field that is wrong. */
export function ownModelRequest(f) {
  const t = (k) => (f[k] ?? "").trim();
  const errors = {};
  if (!t("model")) errors.model = "Pick the ONNX model file.";
  else if (!t("model").toLowerCase().endsWith(".onnx")) errors.model = `${t("model")} is not an .onnx file.`;
  if (!t("reference")) errors.reference = "Pick the reference CSV: the rows the drift statistics compare with.";
  const stem = t("model").split(/[\\/]/).pop().replace(/\.onnx$/i, "");
  const name = t("name") || stem;
  if (!errors.model && !/[A-Za-z0-9]/.test(name)) errors.name = "Name the model: the name goes into the image tag.";
  if (!/[A-Za-z0-9]/.test(t("version"))) errors.version = "Give a version such as 1.0.0: it goes into the image tag.";
  const value = {
    task: t("task") || "classifier",
    model: t("model"),
    reference: t("reference"),
    holdout: t("holdout") || null,
    label_column: t("label_column") || "label",
    name,
    version: t("version"),
    missing: t("missing") || "reject",
    positive_class: t("positive_class") || null,
  };
  return { value, errors };
}

export function pValue(v) {
  if (v == null || !Number.isFinite(v)) return "–";
  return v < 0.001 ? "<0.001" : v.toFixed(3);
}

export const VERDICT_LABEL = {
  ok: "OK",
  warning: "Warning",
  drift: "Drift",
  insufficient_data: "Too few rows",
};

export function verdictLabel(v) {
  return VERDICT_LABEL[v] ?? v;
}

/** The platforms the wizard offers; `deploys` says whether the console can deploy there today. */
export const PLATFORMS = [
  { id: "sandbox", title: "This computer", blurb: "Docker on this machine, images built locally. No cloud account.", deploys: true },
  { id: "fleet", title: "Several hosts behind a load balancer", blurb: "Three hosts on this computer behind HAProxy: rolling and canary deploys with no downtime, one dashboard over every replica. No cloud account.", deploys: true },
  { id: "ssh", title: "An SSH host you already have", blurb: "Any Linux host with Docker and docker-compose that you can SSH into.", deploys: true },
  { id: "ec2", title: "AWS EC2", blurb: "Full control: the console provisions a t3 host, key pair, locked-down security group and Docker.", deploys: true },
  { id: "cloud-run", title: "Google Cloud Run", blurb: "Stateless APIs with variable traffic.", deploys: false,
    needs: "Cloud Run deploys need a Google Cloud project, Artifact Registry and the gcloud credentials; the console does not drive them yet. Push the same image and run `gcloud run deploy`." },
  { id: "azure", title: "Azure", blurb: "Enterprise estates (Entra ID, policy, private networking).", deploys: false,
    needs: "Azure Container Apps or AKS deploys need a subscription, a resource group and az credentials; the console does not drive them yet." },
  { id: "render", title: "Render", blurb: "Simple public demos from a Git repository.", deploys: false,
    needs: "Render builds from your repository on its own; connect the repository in Render's dashboard and point it at inference-image/Dockerfile." },
];

const ADVICE = {
  control: ["ec2", "Full control and live demos: AWS EC2. You own the host, SSH in, and the console can roll back in seconds."],
  stateless: ["cloud-run", "A stateless API with variable traffic: Google Cloud Run scales to zero and back. (The console can still run it on EC2 or your own host.)"],
  enterprise: ["azure", "Enterprise environment: Azure fits an existing Microsoft estate. (The console can still run it on EC2 or your own host.)"],
  demo: ["render", "A simple demo: Render builds straight from the repository. (Or use this computer's sandbox to show it locally.)"],
  try: ["sandbox", "Just trying: this computer. Everything runs locally in Docker, with replayed traffic for the dashboard."],
};

export function advise(need) {
  const a = ADVICE[need];
  return a ? { platform: a[0], text: a[1] } : null;
}

/** Checks the remote-host form; returns {value, errors} with one sentence per bad field. */
export function checkRemote(f) {
  const errors = {};
  const host = (f.host ?? "").trim();
  if (!host) errors.host = "Enter the host's name or address.";
  else if (/\s/.test(host)) errors.host = "A host name has no spaces.";
  const port = Number(f.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) errors.port = "The SSH port is a number from 1 to 65535.";
  const servicePort = Number(f.service_port);
  if (!Number.isInteger(servicePort) || servicePort < 1 || servicePort > 65535) errors.service_port = "The service port is a number from 1 to 65535.";
  const user = (f.user ?? "").trim();
  if (!/^[a-z_][a-z0-9_-]*$/i.test(user)) errors.user = "Enter the login user (for Ubuntu AMIs: ubuntu).";
  const fp = (f.fingerprint ?? "").trim();
  if (!/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(fp)) errors.fingerprint = "Paste the host key fingerprint as `ssh-keygen -lf` prints it: SHA256: followed by 43 characters.";
  const dir = (f.compose_dir ?? "").trim();
  if (!dir.startsWith("/")) errors.compose_dir = "The compose directory is an absolute path, like /opt/inference.";
  const image = (f.image ?? "").trim();
  if (!/^[a-z0-9.-]+(:[0-9]+)?\/[a-z0-9._\/-]+$/.test(image)) errors.image = "Enter the image without a tag, like ghcr.io/owner/repo (lower case).";
  const value = {
    host, port, user, fingerprint: fp, compose_dir: dir, image,
    registry_user: (f.registry_user ?? "").trim(), service_port: servicePort,
  };
  return { value, errors };
}

/** Which wizard steps apply to a platform, and why a step is skipped. */
export function stepNote(step, platform) {
  if (step === 2 && platform !== "ec2") {
    return platform === "sandbox" || platform === "fleet"
      ? "Nothing to provision: the sandbox runs on this computer's Docker engine."
      : "Nothing to provision: you brought the host. Make sure Docker and docker-compose are installed on it.";
  }
  if (step === 3 && (platform === "sandbox" || platform === "fleet")) {
    return "GitHub is not needed for the sandbox: its images are built on this computer.";
  }
  return null;
}

/** The page's target for a wizard platform. */
export function targetOf(platform) {
  return platform === "sandbox" ? "sandbox" : platform === "fleet" ? "sandbox-fleet" : "remote";
}

/** Engine events → {id, steps: [{seq, name, state, seconds}], log: [lines], outcome}. */
export function progressInit() {
  return { id: null, steps: [], log: [], outcome: null };
}

const LOG_KEEP = 2000;

export function progressReduce(p, e) {
  const next = { ...p, steps: p.steps.slice(), log: p.log.slice() };
  switch (e.event) {
    case "deployment-started":
      return { id: e.id, steps: [], log: [`▶ ${e.trigger} of ${e.tag} on ${e.target} (#${e.id})`], outcome: null };
    case "step-started":
      if (p.id !== null && e.id !== p.id) return p;
      next.steps.push({ seq: e.seq, name: e.name, state: "running", seconds: null });
      next.log.push(`$ ${e.command}`);
      break;
    case "output":
      if (p.id !== null && e.id !== p.id) return p;
      for (const line of e.text.split("\n")) if (line.length) next.log.push(line);
      break;
    case "step-finished": {
      if (p.id !== null && e.id !== p.id) return p;
      const i = next.steps.findIndex((s) => s.seq === e.seq);
      if (i >= 0) next.steps[i] = { ...next.steps[i], state: e.ok ? "ok" : "failed", seconds: e.seconds };
      break;
    }
    case "deployment-finished":
      if (p.id !== null && e.id !== p.id) return p;
      next.outcome = { status: e.status, health: e.health, error: e.error ?? null };
      next.log.push(e.status === "succeeded" ? `✔ ${e.status}, ${e.health}` : `✘ ${e.status}: ${e.error ?? e.health}`);
      break;
    default:
      return p;
  }
  if (next.log.length > LOG_KEEP) next.log = next.log.slice(-LOG_KEEP);
  return next;
}

/** The rollback targets in a history: healthy, finished, another version than the one serving,
 * newest record per version. */
export function rollbackCandidates(deployments, serving) {
  const seen = new Set();
  return deployments.filter((d) => {
    if (d.health !== "ready" || d.status !== "succeeded") return false;
    if (serving && (d.id === serving.id || d.tag === serving.tag)) return false;
    if (seen.has(d.tag)) return false;
    seen.add(d.tag);
    return true;
  });
}

/** The dashboard's shortest time range (15 min, 1 h, 24 h) that still shows a moment `t` (unix
 * seconds) at `now`, or null when it is older than the charts keep. */
export function dashboardRangeFor(t, now) {
  const back = now - t;
  return [900, 3600, 86400].find((r) => back <= r * 0.9) ?? null;
}
