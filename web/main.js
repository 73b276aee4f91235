// The web demo: one photo, one filter bank as a conv2d layer (3 channels in, 6 out), run
// exactly on WebGPU (direct kernel) and approximately (MADDNESS tables trained here in wasm),
// side by side. Plain ES module, no bundler: it imports the wasm-bindgen output in ./pkg.
//
// For automated tests the page reports its state on #status (data-state = loading | ready |
// running | done | error) and its numbers as data-* attributes of #results; `?autorun=1`
// runs the demo as soon as the GPU is ready.

import init, * as mc from "./pkg/maddconv_web.js";
import { $, setStatus, showError, nextFrame, messageOf } from "./page.js";

const MAX_SIDE = 256;
const TRAIN_PHOTO = "assets/chelsea.png";

const state = { gpu: null, photo: null, busy: false, tablesUrl: null };

// Decodes an image (URL or File) and scales it so that its longer side is at most MAX_SIDE.
async function loadPhoto(source) {
  let bitmap;
  if (typeof source === "string") {
    const resp = await fetch(source);
    if (!resp.ok) throw new Error(`could not load ${source}: HTTP ${resp.status}`);
    bitmap = await createImageBitmap(await resp.blob());
  } else {
    bitmap = await createImageBitmap(source);
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale));
  const h = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = new OffscreenCanvas(w, h);
  const g = canvas.getContext("2d");
  g.drawImage(bitmap, 0, 0, w, h);
  const rgba = g.getImageData(0, 0, w, h).data;
  // RGBA bytes → 1×3×H×W floats in [0, 1].
  const x = new Float32Array(3 * w * h);
  for (let i = 0; i < w * h; i++) {
    x[i] = rgba[4 * i] / 255;
    x[w * h + i] = rgba[4 * i + 1] / 255;
    x[2 * w * h + i] = rgba[4 * i + 2] / 255;
  }
  return { x, shape: [1, 3, h, w], w, h, bitmap };
}

// The displayed image of a 1×6×H×W output: per colour channel c, outputs 2c and 2c+1.
function toRgb(filter, y, w, h) {
  const n = w * h;
  const out = new Float32Array(3 * n);
  for (let c = 0; c < 3; c++) {
    const a = y.subarray(2 * c * n, (2 * c + 1) * n);
    const b = y.subarray((2 * c + 1) * n, (2 * c + 2) * n);
    for (let i = 0; i < n; i++) {
      out[c * n + i] =
        filter === "sobel"
          ? Math.hypot(a[i], b[i]) / 4 // gradient magnitude
          : 0.5 + 4 * (a[i] - b[i]); // difference of Gaussians
    }
  }
  return out;
}

function drawPlanes(canvas, planes, w, h, gain = 1) {
  canvas.width = w;
  canvas.height = h;
  const g = canvas.getContext("2d");
  const img = g.createImageData(w, h);
  const n = w * h;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      img.data[4 * i + c] = Math.max(0, Math.min(255, Math.round(planes[c * n + i] * gain * 255)));
    }
    img.data[4 * i + 3] = 255;
  }
  g.putImageData(img, 0, 0);
}

function clearCanvas(canvas) {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

const fmtMs = (o) =>
  Number.isFinite(o.kernelMs)
    ? `${o.kernelMs.toFixed(3)} ms (min ${o.kernelMinMs.toFixed(3)}, ${o.repetitions} runs, ${o.clock} clock)`
    : "not timed";

function setResult(id, text, key, value) {
  $(id).textContent = text;
  if (key !== undefined) $("results").dataset[key] = String(value);
}

async function selectPhoto() {
  const choice = $("photo").value;
  if (choice === "file") {
    const f = $("file").files[0];
    if (!f) {
      $("file").click();
      return;
    }
    state.photo = await loadPhoto(f);
  } else {
    state.photo = await loadPhoto(choice);
  }
  const p = state.photo;
  const canvas = $("canvas-input");
  canvas.width = p.w;
  canvas.height = p.h;
  canvas.getContext("2d").drawImage(p.bitmap, 0, 0, p.w, p.h);
  for (const id of ["canvas-exact", "canvas-approx", "canvas-diff"]) clearCanvas($(id));
}

function updateCodebookLimit() {
  const layer = mc.Layer.demoFilter($("filter").value);
  const d = layer.windowLen;
  layer.free();
  const input = $("codebooks");
  input.max = String(d);
  if (Number(input.value) > d) input.value = String(d);
}

async function run() {
  if (state.busy) return;
  state.busy = true;
  $("run").disabled = true;
  $("error").hidden = true;
  for (const k of Object.keys($("results").dataset)) delete $("results").dataset[k];
  for (const td of document.querySelectorAll("#results td[id^='r-']")) td.textContent = "–";
  for (const id of ["canvas-exact", "canvas-approx", "canvas-diff"]) clearCanvas($(id));
  try {
    const filter = $("filter").value;
    const codebooks = Number($("codebooks").value);
    const reps = Math.max(1, Math.min(100, Number($("reps").value) || 10));
    const { x, shape, w, h } = state.photo;
    const layer = mc.Layer.demoFilter(filter);
    setResult("r-layer", `conv2d ${layer.inChannels}→${layer.outChannels}, window D = ${layer.windowLen}, input ${shape.join("×")}`);

    setStatus("running", "Exact convolution on WebGPU…");
    const direct = state.gpu.direct(layer);
    const exact = await direct.run(x, shape, reps);
    direct.free();
    const y = exact.data;
    drawPlanes($("canvas-exact"), toRgb(filter, y, w, h), w, h);
    setResult("r-direct-ms", fmtMs(exact), "directMs", exact.kernelMs);

    setStatus("running", "CPU f64 reference (wasm) for the exactness check…");
    await nextFrame();
    const ref = layer.reference(x, shape);
    const rel = mc.relativeL2(y, ref.data);
    setResult("r-direct-rel", `${rel.toExponential(2)} (CPU reference took ${ref.kernelMs.toFixed(0)} ms)`, "directRelL2", rel);
    ref.free();

    const source = $("train").value;
    let tables;
    if (source === "file") {
      const f = $("tables-file").files[0];
      if (!f) throw new Error("choose a table file first (Train on → a table file…)");
      tables = mc.Tables.fromBytes(new Uint8Array(await f.arrayBuffer()));
      if (tables.specJson() !== layer.specJson()) {
        const other = tables.specJson();
        tables.free();
        throw new Error(`the table file ${f.name} is for another layer (${other}), not this filter's (${layer.specJson()})`);
      }
      setResult("r-train", `none: tables loaded from ${f.name}`);
    } else {
      let train = { x, shape };
      if (source === "heldout") train = await loadPhoto(TRAIN_PHOTO);
      setStatus("running", `Training ${codebooks} codebooks on the CPU (wasm)…`);
      await nextFrame();
      const t0 = performance.now();
      tables = mc.Tables.train(layer, train.x, train.shape, codebooks, {
        source: source === "heldout" ? TRAIN_PHOTO : "the input photo",
      });
      const trainMs = performance.now() - t0;
      setResult(
        "r-train",
        `${trainMs.toFixed(0)} ms on ${source === "heldout" ? "a held-out photo" : "this photo"} ` +
          `(${train.shape[2] * train.shape[3]} windows), ${codebooks} codebooks`,
        "trainMs",
        trainMs,
      );
    }
    const bytes = tables.toBytes();
    if (state.tablesUrl) URL.revokeObjectURL(state.tablesUrl);
    state.tablesUrl = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    const link = document.createElement("a");
    link.id = "tables-download";
    link.href = state.tablesUrl;
    link.download = `maddness-${filter}-${tables.codebooks}cb.safetensors`;
    link.textContent = `download (${(bytes.length / 1024).toFixed(1)} KiB, ${tables.codebooks} codebooks)`;
    $("r-tables").replaceChildren(link);

    setStatus("running", "MADDNESS on WebGPU…");
    const madd = state.gpu.maddness(tables);
    const approx = await madd.run(x, shape, reps);
    const kernels = madd.kernels;
    madd.free();
    setResult("r-madd-ms", `${fmtMs(approx)}, ${kernels} kernels`, "maddMs", approx.kernelMs);
    tables.free();
    const yh = approx.data;
    drawPlanes($("canvas-approx"), toRgb(filter, yh, w, h), w, h);
    const diff = new Float32Array(3 * w * h);
    const a = toRgb(filter, y, w, h);
    const b = toRgb(filter, yh, w, h);
    for (let i = 0; i < diff.length; i++) diff[i] = Math.abs(a[i] - b[i]);
    drawPlanes($("canvas-diff"), diff, w, h, 2);
    const e = mc.nmse(y, yh, exact.shape);
    setResult("r-nmse", `${e.toFixed(5)} (${(1 - e).toFixed(5)})`, "nmse", e);
    layer.free();
    setStatus("done", "Done.");
  } catch (err) {
    showError(err && err.message ? err.message : String(err));
  } finally {
    state.busy = false;
    $("run").disabled = !state.gpu;
  }
}

async function main() {
  try {
    await init();
  } catch (err) {
    showError(`could not load the WebAssembly module: ${err.message || err}`);
    return;
  }
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    run();
  });
  $("photo").addEventListener("change", () => selectPhoto().catch((e) => showError(messageOf(e))));
  $("file").addEventListener("change", () => selectPhoto().catch((e) => showError(messageOf(e))));
  $("filter").addEventListener("change", updateCodebookLimit);
  $("train").addEventListener("change", () => {
    if ($("train").value === "file" && !$("tables-file").files[0]) $("tables-file").click();
  });
  updateCodebookLimit();
  try {
    await selectPhoto();
  } catch (err) {
    showError(err.message || String(err));
    return;
  }
  try {
    state.gpu = await mc.Gpu.create();
  } catch (err) {
    $("adapter-name").textContent = "none";
    showError(err.message || String(err));
    return;
  }
  const info = state.gpu.adapterInfo();
  const name = info.name || "(the browser does not tell the adapter's name)";
  $("adapter-name").textContent =
    `${name} — ${info.backend === "browserwebgpu" ? "WebGPU" : info.backend}, ` +
    `${info.deviceType === "Cpu" ? "a software (CPU) adapter whose times say nothing about a GPU, " : ""}` +
    `${info.timestamps ? "timestamp queries" : "no timestamp queries (wall-clock times)"}, ` +
    `${info.limits.maxComputeWorkgroupStorageSize / 1024} KiB workgroup memory, ` +
    `${info.limits.maxComputeInvocationsPerWorkgroup} invocations per workgroup`;
  $("adapter").dataset.name = info.name;
  $("run").disabled = false;
  setStatus("ready", "Ready.");
  if (new URLSearchParams(location.search).get("autorun") === "1") run();
}

main();
