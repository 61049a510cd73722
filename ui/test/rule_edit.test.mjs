// The alert-rule editor's logic (node --test ui/test/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { collectRules, editorRows } from "../js/rule_edit.js";

const DEFS = [
  { id: "error-rate", title: "Error rate above 5 %", metric: "system.error_rate", op: ">", threshold: 0.05, window_minutes: 5, severity: "critical" },
  { id: "input-drift", title: "Input drift", metric: "data.drift.verdict", op: "is", threshold: "drift", window_minutes: 15, severity: "critical" },
  { id: "anomaly-rate", title: "Anomaly rate above 25 %", metric: "model.anomaly_rate", op: ">", threshold: 0.25, window_minutes: 15, severity: "warning" },
];

test("unchanged rows give back the same rules", () => {
  assert.deepEqual(collectRules(DEFS, editorRows(DEFS)), { rules: DEFS });
});

test("edits keep their types and removed rules go", () => {
  const rows = editorRows(DEFS);
  rows[0].threshold = " 0.1 ";
  rows[0].window = "10";
  rows[0].severity = "warning";
  rows[1].threshold = "warning";
  rows[2].keep = false;
  const { rules, error } = collectRules(DEFS, rows);
  assert.equal(error, undefined);
  assert.equal(rules.length, 2);
  assert.deepEqual(rules[0], { ...DEFS[0], threshold: 0.1, window_minutes: 10, severity: "warning" });
  assert.equal(rules[1].threshold, "warning");
  assert.equal(editorRows(DEFS)[1].verdict, true);
});

test("bad input names the rule and the field", () => {
  const bad = (change) => {
    const rows = editorRows(DEFS);
    change(rows);
    return collectRules(DEFS, rows).error;
  };
  assert.match(bad((r) => (r[0].threshold = "lots")), /^error-rate: the threshold must be a number/);
  assert.match(bad((r) => (r[0].threshold = "")), /^error-rate: the threshold/);
  assert.match(bad((r) => (r[2].window = "0")), /^anomaly-rate: the window must be a whole number/);
  assert.match(bad((r) => (r[2].window = "2.5")), /^anomaly-rate: the window/);
  assert.match(bad((r) => (r[2].window = "1441")), /^anomaly-rate: the window/);
  assert.match(bad((r) => (r[1].threshold = "maybe")), /^input-drift: the verdict must be one of/);
  assert.match(bad((r) => (r[0].title = "  ")), /^error-rate: the title is empty/);
  assert.match(bad((r) => r.forEach((x) => (x.keep = false))), /keep at least one rule/);
});
