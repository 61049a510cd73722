// UI logic under Node's built-in test runner (no packages): node --test ui/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  advise, ago, checkRemote, fixed, ownModelRequest, percent, progressInit, progressReduce, pValue, rollbackCandidates,
  stepNote, targetOf, verdictLabel, PLATFORMS, dashboardRangeFor,
} from "../js/format.js";
import { normalizeError } from "../js/api.js";

const FP = "SHA256:" + "A".repeat(43);

test("ago speaks in minutes, hours, days", () => {
  const now = 1_000_000_000_000;
  assert.equal(ago(now - 10_000, now), "just now");
  assert.equal(ago(now - 5 * 60_000, now), "5 min ago");
  assert.equal(ago(now - 3 * 3_600_000, now), "3 h ago");
  assert.equal(ago(now - 2 * 86_400_000, now), "2 d ago");
});

test("numbers in the drift table", () => {
  assert.equal(fixed(0.12345), "0.123");
  assert.equal(fixed(null), "–");
  assert.equal(fixed(NaN), "–");
  assert.equal(pValue(0.0000001), "<0.001");
  assert.equal(pValue(0.25), "0.250");
  assert.equal(verdictLabel("insufficient_data"), "Too few rows");
});

test("the advisor follows the seed's guidance", () => {
  assert.equal(advise("control").platform, "ec2");
  assert.equal(advise("stateless").platform, "cloud-run");
  assert.equal(advise("enterprise").platform, "azure");
  assert.equal(advise("demo").platform, "render");
  assert.equal(advise("try").platform, "sandbox");
  assert.equal(advise("nonsense"), null);
  const deploying = PLATFORMS.filter((p) => p.deploys).map((p) => p.id);
  assert.deepEqual(deploying, ["sandbox", "fleet", "ssh", "ec2"]);
  for (const p of PLATFORMS.filter((p) => !p.deploys)) assert.ok(p.needs.length > 40, p.id);
});

test("the remote-host form names each bad field", () => {
  const good = { host: "ec2-1-2-3-4.compute.amazonaws.com", port: "22", user: "ubuntu", fingerprint: FP,
    compose_dir: "/opt/inference", image: "ghcr.io/acme/inference", registry_user: "acme", service_port: "8080" };
  const ok = checkRemote(good);
  assert.deepEqual(ok.errors, {});
  assert.equal(ok.value.port, 22);
  assert.equal(ok.value.service_port, 8080);
  const bad = checkRemote({ ...good, host: "a b", port: "70000", fingerprint: "MD5:aa", compose_dir: "opt", image: "Inference" });
  assert.deepEqual(Object.keys(bad.errors).sort(), ["compose_dir", "fingerprint", "host", "image", "port"]);
  assert.match(bad.errors.fingerprint, /ssh-keygen -lf/);
});

test("each wizard platform maps to the page's target", () => {
  assert.equal(targetOf("sandbox"), "sandbox");
  assert.equal(targetOf("fleet"), "sandbox-fleet");
  assert.equal(targetOf("ssh"), "remote");
  assert.equal(targetOf("ec2"), "remote");
});

test("steps that do not apply say why", () => {
  assert.match(stepNote(2, "sandbox"), /Nothing to provision/);
  assert.match(stepNote(2, "ssh"), /you brought the host/);
  assert.equal(stepNote(2, "ec2"), null);
  assert.match(stepNote(3, "sandbox"), /not needed/);
  assert.match(stepNote(2, "fleet"), /Nothing to provision/);
  assert.match(stepNote(3, "fleet"), /not needed/);
  assert.equal(stepNote(3, "ec2"), null);
});

test("engine events become steps, a log and an outcome", () => {
  const events = [
    { event: "deployment-started", id: 7, target: "sandbox", tag: "v2", trigger: "direct" },
    { event: "step-started", id: 7, seq: 1, name: "pull", command: "docker-compose pull" },
    { event: "output", id: 7, seq: 1, stderr: false, text: "Pulling inference ... done\n" },
    { event: "step-finished", id: 7, seq: 1, ok: true, exit_code: 0, seconds: 1.25 },
    { event: "output", id: 8, seq: 1, stderr: false, text: "another deployment" },
    { event: "step-started", id: 7, seq: 2, name: "switch", command: "docker-compose up -d" },
    { event: "step-finished", id: 7, seq: 2, ok: false, exit_code: 1, seconds: 0.5 },
    { event: "deployment-finished", id: 7, status: "failed", health: "unready", error: "switch failed" },
  ];
  const p = events.reduce(progressReduce, progressInit());
  assert.equal(p.id, 7);
  assert.deepEqual(p.steps.map((s) => [s.name, s.state]), [["pull", "ok"], ["switch", "failed"]]);
  assert.ok(p.log.includes("Pulling inference ... done"));
  assert.ok(!p.log.includes("another deployment"), "events of another deployment are ignored");
  assert.deepEqual(p.outcome, { status: "failed", health: "unready", error: "switch failed" });
  assert.equal(p.log.at(-1), "✘ failed: switch failed");
});

test("the log keeps the newest lines only", () => {
  let p = progressReduce(progressInit(), { event: "deployment-started", id: 1, target: "t", tag: "v", trigger: "direct" });
  p = progressReduce(p, { event: "output", id: 1, seq: 1, stderr: false, text: Array.from({ length: 2500 }, (_, i) => `l${i}`).join("\n") });
  assert.equal(p.log.length, 2000);
  assert.equal(p.log.at(-1), "l2499");
});

test("rollback is offered only to healthy other versions, once each", () => {
  const d = (id, tag, status, health) => ({ id, tag, status, health });
  const list = [d(6, "v1", "succeeded", "ready"), d(5, "v3", "failed", "unready"), d(4, "v2", "succeeded", "ready"),
    d(3, "v2", "succeeded", "ready"), d(2, "v1", "succeeded", "ready"), d(1, "v0", "succeeded", "unready")];
  assert.deepEqual(rollbackCandidates(list, list[0]).map((x) => x.id), [4]);
  assert.deepEqual(rollbackCandidates(list, null).map((x) => x.id), [6, 4]);
});

test("errors always reach the page as code and message", () => {
  assert.deepEqual(normalizeError({ code: "no-docker", message: "start Docker" }), { code: "no-docker", message: "start Docker" });
  assert.deepEqual(normalizeError("boom"), { code: "internal", message: "boom" });
  assert.deepEqual(normalizeError({ message: "m" }), { code: "internal", message: "m" });
});

test("percentages in the class and calibration tables", () => {
  assert.equal(percent(0.25), "25%");
  assert.equal(percent(0.051), "5.1%");
  assert.equal(percent(0), "0%");
  assert.equal(percent(null), "–");
});

test("the own-model form names what is missing and derives the name", () => {
  let r = ownModelRequest({ task: "regressor", model: "", reference: "", version: "1" });
  assert.match(r.errors.model, /Pick the ONNX model/);
  assert.match(r.errors.reference, /reference CSV/);
  r = ownModelRequest({ model: "/m/model.txt", reference: "/r.csv", version: "1" });
  assert.match(r.errors.model, /not an \.onnx file/);
  r = ownModelRequest({ model: "/models/churn-v2.ONNX", reference: "/r.csv", version: " ", holdout: " " });
  assert.match(r.errors.version, /version/);
  r = ownModelRequest({ model: "/models/churn-v2.onnx", reference: "/r.csv", version: "2.0", missing: "per-row" });
  assert.deepEqual(r.errors, {});
  assert.equal(r.value.name, "churn-v2");
  assert.equal(r.value.task, "classifier");
  assert.equal(r.value.holdout, null);
  assert.equal(r.value.missing, "per-row");
  assert.equal(r.value.label_column, "label");
});

test("a firing links to the shortest dashboard range that still shows it", () => {
  const now = 1_765_000_000;
  assert.equal(dashboardRangeFor(now - 60, now), 900);
  assert.equal(dashboardRangeFor(now - 900, now), 3600);
  assert.equal(dashboardRangeFor(now - 3000, now), 3600);
  assert.equal(dashboardRangeFor(now - 20 * 3600, now), 86400);
  assert.equal(dashboardRangeFor(now - 23 * 3600, now), null);
});
