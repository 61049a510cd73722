// The page's only door to the app: Tauri commands (window.__TAURI__, withGlobalTauri) and the
// engine's progress events. Errors always arrive as {code, message}.

const tauri = () => window.__TAURI__;

export function normalizeError(e) {
  if (e && typeof e === "object" && typeof e.message === "string") {
    return { code: typeof e.code === "string" ? e.code : "internal", message: e.message };
  }
  return { code: "internal", message: String(e) };
}

export async function call(command, args = {}) {
  try {
    return await tauri().core.invoke(command, args);
  } catch (e) {
    throw normalizeError(e);
  }
}

/** Calls fn(event) for every deployment progress event; returns a function that stops listening. */
export function onEngine(fn) {
  return tauri().event.listen("engine", (ev) => fn(ev.payload));
}

/** Calls fn(message) for every EC2 provisioning progress line; returns a function that stops listening. */
export function onProvision(fn) {
  return tauri().event.listen("provision", (ev) => fn(String(ev.payload)));
}
