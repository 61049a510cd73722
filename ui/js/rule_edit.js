// The alert-rule editor's logic, apart from the page: rows for each rule the service evaluates,
// and the list to send back once a person changed thresholds, windows, severities or removed a
// rule. The service checks the list against its model; this only catches what a form can.

export const VERDICTS = ["ok", "warning", "drift"];
export const MAX_WINDOW_MINUTES = 1440;

/** One editor row per rule definition: what the inputs start with. */
export function editorRows(definitions) {
  return definitions.map((d) => ({
    id: d.id,
    title: d.title,
    metric: d.metric,
    op: d.op,
    verdict: d.op === "is" && typeof d.threshold === "string",
    keep: true,
    threshold: String(d.threshold),
    window: String(d.window_minutes),
    severity: d.severity,
  }));
}

/**
 * The rules to send from the rows as edited: `{ rules }`, or `{ error }` naming the rule and the
 * field. A threshold keeps its type: a number for a comparison, text for a verdict.
 */
export function collectRules(definitions, rows) {
  const rules = [];
  for (const [i, d] of definitions.entries()) {
    const r = rows[i];
    if (!r || r.id !== d.id) return { error: `the editor lost track of rule ${d.id}; reload the page` };
    if (!r.keep) continue;
    const title = r.title.trim();
    if (!title) return { error: `${d.id}: the title is empty` };
    const window = Number(r.window.trim());
    if (!Number.isInteger(window) || window < 1 || window > MAX_WINDOW_MINUTES) {
      return { error: `${d.id}: the window must be a whole number of minutes from 1 to ${MAX_WINDOW_MINUTES}, not "${r.window}"` };
    }
    let threshold;
    if (r.verdict) {
      if (!VERDICTS.includes(r.threshold)) return { error: `${d.id}: the verdict must be one of ${VERDICTS.join(", ")}` };
      threshold = r.threshold;
    } else if (typeof d.threshold === "number") {
      const text = r.threshold.trim();
      threshold = Number(text);
      if (text === "" || !Number.isFinite(threshold)) return { error: `${d.id}: the threshold must be a number, not "${r.threshold}"` };
    } else {
      threshold = d.threshold;
    }
    if (r.severity !== "warning" && r.severity !== "critical") return { error: `${d.id}: the severity must be warning or critical` };
    rules.push({ id: d.id, title, metric: d.metric, op: d.op, threshold, window_minutes: window, severity: r.severity });
  }
  if (!rules.length) return { error: "keep at least one rule (or restore the defaults)" };
  return { rules };
}
