// Real layers on WebGPU, next to ONNX Runtime Web: one conv layer of a trained model (a layer
// folder shipped with the site by build.sh: layer.json, weight.npy, bias.npy, test.npy,
// test_expected.npy, train.npy where present, and model.onnx written by
// `maddconv model export-conv`), run by our exact direct kernel, our MADDNESS tables and
// ONNX Runtime Web's WebGPU execution provider, interleaved, on the same adapter.
//
// For automated tests the page reports its state on #status (data-state = loading | ready |
// running | done | error) and its numbers as data-* attributes of #results. URL parameters:
// `layer=NAME` selects a layer, `autorun=1` runs as soon as the GPU is ready.

import init, * as mc from "./pkg/maddconv_web.js";
import { $, setStatus, showError, nextFrame, messageOf, fetchBytes, median, startGpu } from "./page.js";
import * as ort from "./ort/ort.webgpu.bundle.min.mjs";

const params = new URLSearchParams(location.search);
const state = { gpu: null, layers: [], busy: false, ort: null };

async function fetchNpy(url) {
  return new mc.NpyArray(await fetchBytes(url), url);
}

const fmt = (v, digits = 3) => (Number.isFinite(v) ? v.toPrecision(digits) : "–");

// The default number of codebooks for a window of D dimensions: D/8, at least min(D, 8),
// at most 64 (the command line's default).
const defaultCodebooks = (d) => Math.min(64, Math.max(Math.min(d, 8), Math.floor(d / 8)));

async function loadLayer(entry) {
  const dir = `layers/${entry.name}/`;
  const json = await (await fetch(dir + "layer.json")).text();
  const weight = await fetchBytes(dir + "weight.npy");
  const bias = entry.hasBias ? await fetchBytes(dir + "bias.npy") : undefined;
  const layer = mc.Layer.fromFolder(json, weight, bias);
  return { layer, spec: JSON.parse(json), dir };
}

function describe(entry, spec) {
  const k = spec.kernel.join("×");
  const src = entry.source === "fixture" ? "repository fixture" : "shared data set";
  return `${entry.name} (${src}): ${spec.kind} ${spec.in_channels} → ${spec.out_channels}, ` +
    `kernel ${k}, stride ${spec.stride.join(",")}, groups ${spec.groups}` +
    (spec.source ? ` — ${spec.source}` : "");
}

// ONNX Runtime Web, WebGPU execution provider, single-threaded wasm (no cross-origin
// isolation needed). Returns the session, its GPUDevice and the input already on the GPU.
async function ortSession(dir, x) {
  ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
  ort.env.wasm.numThreads = 1;
  const model = await fetchBytes(dir + "model.onnx");
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ["webgpu"],
    preferredOutputLocation: "gpu-buffer",
  });
  const device = await ort.env.webgpu.device;
  const bytes = x.data.byteLength;
  const buffer = device.createBuffer({
    size: Math.ceil(bytes / 16) * 16,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buffer, 0, x.data);
  const input = ort.Tensor.fromGpuBuffer(buffer, { dataType: "float32", dims: x.shape });
  return { session, device, input, buffer };
}

async function ortRunTimed(o) {
  const t0 = performance.now();
  const out = await o.session.run({ x: o.input });
  await o.device.queue.onSubmittedWorkDone();
  const ms = performance.now() - t0;
  return { ms, out };
}

function setRow(id, cells) {
  const tds = $(id).querySelectorAll("td");
  cells.forEach((v, i) => {
    if (v !== undefined) tds[i + 2].textContent = v;
  });
}

async function run() {
  if (state.busy) return;
  state.busy = true;
  $("run").disabled = true;
  $("error").hidden = true;
  const results = $("results");
  for (const k of Object.keys(results.dataset)) delete results.dataset[k];
  for (const id of ["row-direct", "row-madd", "row-ort"]) setRow(id, ["–", "–", id === "row-direct" ? "1" : "–", "–", id === "row-direct" ? "1" : "–"]);
  $("notes").textContent = "";
  const notes = [];
  try {
    const entry = state.layers.find((l) => l.name === $("layer").value);
    setStatus("running", `Loading ${entry.name}…`);
    const { layer, dir } = await loadLayer(entry);
    const x = await fetchNpy(dir + "test.npy");
    const expected = await fetchNpy(dir + "test_expected.npy");
    const reps = Math.max(1, Math.min(200, Number($("reps").value) || 10));

    // Our exact kernel: one poisoned run checked against the stored output.
    setStatus("running", "Exact direct kernel…");
    const direct = state.gpu.direct(layer).bind(x.data, x.shape);
    await direct.timeOnce();
    const exact = await direct.output();
    const directRel = mc.relativeL2(exact.data, expected.data);
    results.dataset.directRelL2 = directRel;

    // MADDNESS tables: trained here on train.npy, or loaded from a file.
    let madd = null;
    const source = $("tables").value;
    let tables;
    if (source === "file") {
      const f = $("tables-file").files[0];
      if (!f) throw new Error("choose a table file first (Tables: a table file…)");
      tables = mc.Tables.fromBytes(new Uint8Array(await f.arrayBuffer()));
      if (tables.specJson() !== layer.specJson()) {
        throw new Error(`the table file ${f.name} was trained for another layer (${tables.specJson()})`);
      }
    } else if (source === "train" && entry.hasTrain) {
      const train = await fetchNpy(dir + "train.npy");
      const codebooks = Number($("codebooks").value);
      const maxWindows = Math.max(1000, Number($("max-windows").value) || 20000);
      setStatus("running", `Training ${codebooks} codebooks on ${maxWindows} windows of train.npy (CPU, wasm)…`);
      await nextFrame();
      const t0 = performance.now();
      tables = mc.Tables.train(layer, train.data, train.shape, codebooks, {
        maxWindows,
        source: `${entry.name}/train.npy`,
      });
      const trainMs = performance.now() - t0;
      results.dataset.trainMs = trainMs;
      notes.push(`MADDNESS: ${codebooks} codebooks trained on the layer's train.npy (inputs from other ` +
        `sources than test.npy) in ${(trainMs / 1000).toFixed(1)} s of wasm.`);
    } else if (!entry.hasTrain) {
      notes.push("MADDNESS: this layer ships no train.npy; load a table file from `maddconv train` to compare it.");
    }
    if (tables) {
      madd = state.gpu.maddness(tables).bind(x.data, x.shape);
      await madd.timeOnce();
      const approx = await madd.output();
      const nm = mc.nmse(exact.data, approx.data, exact.shape);
      results.dataset.nmse = nm;
      results.dataset.maddRelL2 = mc.relativeL2(approx.data, expected.data);
      results.dataset.codebooks = tables.codebooks;
    }

    // ONNX Runtime Web on the same layer.
    setStatus("running", "ONNX Runtime Web (WebGPU EP): creating the session…");
    let o = null;
    try {
      o = await ortSession(dir, x);
      const first = await ortRunTimed(o);
      const y = await first.out.y.getData();
      first.out.y.dispose();
      results.dataset.ortRelL2 = mc.relativeL2(y, expected.data);
      results.dataset.ortVsOurs = mc.relativeL2(y, exact.data);
      results.dataset.ortNmse = mc.nmse(exact.data, y, exact.shape);
    } catch (e) {
      results.dataset.ortError = messageOf(e);
      notes.push(`ONNX Runtime Web failed: ${results.dataset.ortError}`);
      o = null;
    }

    // Interleaved timing: one warm-up, then `reps` rounds of each method in turn.
    setStatus("running", `Timing ${reps} interleaved rounds…`);
    const t = { dk: [], dw: [], mk: [], mw: [], ow: [] };
    for (let r = 0; r <= reps; r++) {
      const a = await direct.timeOnce();
      const b = madd ? await madd.timeOnce() : null;
      const c = o ? await ortRunTimed(o) : null;
      if (c) c.out.y.dispose();
      if (r === 0) continue;
      t.dk.push(a.kernelMs);
      t.dw.push(a.wallMs);
      if (b) {
        t.mk.push(b.kernelMs);
        t.mw.push(b.wallMs);
      }
      if (c) t.ow.push(c.ms);
    }
    // The outputs after the timed runs are still the checked ones.
    const again = await direct.output();
    if (mc.relativeL2(again.data, exact.data) !== 0) throw new Error("the direct kernel's output changed between runs");
    const dk = median(t.dk), dw = median(t.dw), mk = median(t.mk), mw = median(t.mw), ow = median(t.ow);
    Object.assign(results.dataset, {
      layer: entry.name, reps, directMs: dk, directWallMs: dw, adapter: state.gpu.adapterName,
    });
    if (madd) Object.assign(results.dataset, { maddMs: mk, maddWallMs: mw });
    if (o) results.dataset.ortWallMs = ow;
    setRow("row-direct", [fmt(dk), fmt(dw), "1", fmt(directRel), "1"]);
    if (madd) {
      const speed = Number.isFinite(dk) ? `${fmt(dk / mk)}× (kernel), ${fmt(dw / mw)}× (per run)` : `${fmt(dw / mw)}× (per run)`;
      setRow("row-madd", [fmt(mk), fmt(mw), speed, fmt(Number(results.dataset.maddRelL2)), fmt(1 - Number(results.dataset.nmse), 4)]);
    }
    if (o) {
      const ortRel = Number(results.dataset.ortRelL2);
      // An exact engine off by more than float rounding is a wrong result: say so.
      const wrong = !(ortRel < 1e-4);
      results.dataset.ortWrong = wrong ? "1" : "0";
      setRow("row-ort", ["–", fmt(ow), `${fmt(dw / ow)}× (per run)`, (wrong ? "WRONG: " : "") + fmt(ortRel), fmt(1 - Number(results.dataset.ortNmse), 7)]);
      $("row-ort").classList.toggle("wrong", wrong);
      if (wrong) {
        notes.push(`ONNX Runtime Web's output is NOT the layer's output (relative L2 ${fmt(ortRel)} against the stored ` +
          `output, ${fmt(Number(results.dataset.ortVsOurs))} against ours, while ours is within ${fmt(directRel)}).`);
      }
      notes.push(`ONNX Runtime Web ${ort.env.versions?.web ?? ""}: output vs ours, relative L2 ${fmt(Number(results.dataset.ortVsOurs))}; ` +
        "its time per run includes its own dispatch of the session (input and output stay on the GPU).");
      o.buffer.destroy();
    }
    $("notes").textContent = notes.join(" ");
    setStatus("done", `Done: ${entry.name}, ${reps} interleaved rounds.`);
  } catch (e) {
    console.error(e);
    showError(messageOf(e));
  } finally {
    state.busy = false;
    $("run").disabled = !state.gpu;
  }
}

// Shows the chosen layer and sets the codebooks to the default for its window length.
async function selectLayer() {
  const entry = state.layers.find((l) => l.name === $("layer").value);
  if (!entry) return;
  $("tables").querySelector('option[value="train"]').disabled = !entry.hasTrain;
  if (!entry.hasTrain && $("tables").value === "train") $("tables").value = "none";
  $("tables-file").hidden = $("tables").value !== "file";
  const resp = await fetch(`layers/${entry.name}/layer.json`);
  if (!resp.ok) throw new Error(`layers/${entry.name}/layer.json: HTTP ${resp.status}`);
  const spec = await resp.json();
  $("layer-info").textContent = describe(entry, spec);
  const d = (spec.in_channels / spec.groups) * spec.kernel.reduce((a, b) => a * b, 1);
  $("codebooks").max = d;
  $("codebooks").value = defaultCodebooks(d);
}

const onChange = (f) => () => f().catch((e) => showError(messageOf(e)));

async function main() {
  await init();
  const resp = await fetch("layers/index.json");
  if (!resp.ok) throw new Error(`no layers in this build (layers/index.json: HTTP ${resp.status})`);
  state.layers = await resp.json();
  for (const l of state.layers) {
    const opt = document.createElement("option");
    opt.value = l.name;
    opt.textContent = `${l.name}${l.source === "fixture" ? " (fixture)" : ""}${l.hasTrain ? "" : " — no train.npy"}`;
    $("layer").append(opt);
  }
  const wanted = params.get("layer");
  if (wanted) {
    if (!state.layers.some((l) => l.name === wanted)) throw new Error(`no layer ${wanted} in this build`);
    $("layer").value = wanted;
  }
  $("layer").addEventListener("change", onChange(selectLayer));
  $("tables").addEventListener("change", onChange(selectLayer));
  await selectLayer();
  await startGpu(mc, state, run, params);
}

main().catch((e) => {
  console.error(e);
  showError(messageOf(e));
});
