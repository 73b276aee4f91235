// Shared by the pages (main.js, layers.js, model.js): the status line (#status, whose data-state the
// tests read), the error box (#error), and a pause that lets the browser paint.

export const $ = (id) => document.getElementById(id);

// data-state: loading | ready | running | done | error.
export function setStatus(s, text) {
  const el = $("status");
  el.dataset.state = s;
  el.textContent = text;
}

export function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = false;
  setStatus("error", "Stopped: " + message);
}

// The message of a thrown value.
export const messageOf = (e) => String(e && e.message ? e.message : e);

// Lets the browser paint the status line before a long synchronous step (training).
export const nextFrame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));

export async function fetchBytes(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`could not load ${url}: HTTP ${resp.status}`);
  return new Uint8Array(await resp.arrayBuffer());
}

export async function fetchJson(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`could not load ${url}: HTTP ${resp.status}`);
  return resp.json();
}

// The median (the upper one of an even count); NaN for none.
export function median(values) {
  const v = [...values].sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)] : NaN;
}

// Starts a page's GPU: creates `mc.Gpu` into `state.gpu`, shows the adapter's name, wires the
// Run form (#controls) to `run`, enables #run, says ready, and runs at once with ?autorun=1.
export async function startGpu(mc, state, run, params) {
  state.gpu = await mc.Gpu.create();
  $("adapter-name").textContent = state.gpu.adapterName || "(unnamed)";
  $("adapter").dataset.name = state.gpu.adapterName;
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    run();
  });
  $("run").disabled = false;
  setStatus("ready", "Ready.");
  if (params.get("autorun") === "1") run();
}
