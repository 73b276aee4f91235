// A whole model on WebGPU: ONNX Runtime Web (WebGPU execution provider) runs the model's ops,
// and our kernels run the replaced convs on the same GPUDevice, reading and writing ONNX
// Runtime's GPU buffers. build.sh ships each model folder (models/NAME/): model.onnx, the test
// inputs test_<input>.npy, onnxruntime's stored test_expected.npy, clips.json, and split/ from
// `maddconv model split --tables` (split.json: the order of segments and cut convs; one ONNX
// file per segment; per conv a layer folder and its tables from `maddconv model calibrate`).
//
// Five paths, interleaved: (1) ONNX Runtime Web on the whole model, WebGPU EP; (2) the same on
// its wasm (CPU) EP; (3) the cut model with our exact direct kernel at each cut, buffers handed
// over on the GPU; (4) the same with the hand-over through the CPU (read back, upload), to show
// what the hand-over costs; (5) the cut model with MADDNESS tables, on the GPU. The exact
// reference is onnxruntime's stored output (CPU), against which every path is checked: an
// engine's exact path off by more than 1e-4 (relative L2) is marked WRONG; if one of ours is,
// the page stops with an error.
//
// For automated tests the page reports its state on #status (data-state = loading | ready |
// running | done | error) and its numbers as data-* attributes of #results. URL parameters:
// `model=NAME`, `autorun=1`, `reps=N`.

import init, * as mc from "./pkg/maddconv_web.js";
import { $, setStatus, showError, messageOf, fetchBytes, fetchJson, median } from "./page.js";
import * as ort from "./ort/ort.webgpu.bundle.min.mjs";

const params = new URLSearchParams(location.search);
const state = { gpu: null, models: [], loaded: new Map(), busy: false };

const fmt = (v, digits = 3) => (Number.isFinite(v) ? v.toPrecision(digits) : "–");
const product = (dims) => dims.reduce((a, b) => a * b, 1);

async function fetchNpy(url) {
  return new mc.NpyArray(await fetchBytes(url), url);
}

// ---- silero VAD's post-processing -------------------------------------------------------

const VAD = { threshold: 0.5, negThreshold: 0.35, minSpeechMs: 250, minSilenceMs: 100, padMs: 30, frame: 512, rate: 16000 };

// Speech segments [start, end) in samples of one clip from its frames' speech probabilities,
// as silero-vad's get_speech_timestamps: a segment starts at a frame ≥ threshold and ends
// after ≥ minSilenceMs below negThreshold; shorter than minSpeechMs is dropped; padMs of
// padding each side (half the gap where neighbours are closer than two paddings).
export function speechSegments(probs) {
  const ms = (v) => (VAD.rate * v) / 1000;
  const minSpeech = ms(VAD.minSpeechMs), minSilence = ms(VAD.minSilenceMs), pad = ms(VAD.padMs);
  const total = probs.length * VAD.frame;
  const segs = [];
  let triggered = false, start = 0, tempEnd = 0;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i], at = i * VAD.frame;
    if (p >= VAD.threshold && tempEnd) tempEnd = 0;
    if (p >= VAD.threshold && !triggered) {
      triggered = true;
      start = at;
      continue;
    }
    if (p < VAD.negThreshold && triggered) {
      if (!tempEnd) tempEnd = at;
      if (at - tempEnd < minSilence) continue;
      if (tempEnd - start > minSpeech) segs.push({ start, end: tempEnd });
      triggered = false;
      tempEnd = 0;
    }
  }
  if (triggered && total - start > minSpeech) segs.push({ start, end: total });
  for (let i = 0; i < segs.length; i++) {
    if (i === 0) segs[i].start = Math.max(0, segs[i].start - pad);
    if (i + 1 < segs.length) {
      const gap = segs[i + 1].start - segs[i].end;
      const half = gap < 2 * pad ? Math.floor(gap / 2) : pad;
      segs[i].end += half;
      segs[i + 1].start = Math.max(0, segs[i + 1].start - half);
    } else {
      segs[i].end = Math.min(total, segs[i].end + pad);
    }
  }
  return segs;
}

// Per clip (clips.json rows, or the whole run as one clip): segments in samples of the clip.
function segmentsPerClip(probs, clips) {
  return clips.map((c) => ({ ...c, segments: speechSegments(probs.subarray(c.rows[0], c.rows[1])) }));
}

// Intersection over union of the speech time of two segment lists (per clip, summed).
function speechIoU(a, b) {
  let inter = 0, union = 0;
  for (let k = 0; k < a.length; k++) {
    const mark = (segs, n) => {
      const m = new Uint8Array(n);
      for (const s of segs) m.fill(1, s.start, Math.min(n, s.end));
      return m;
    };
    const n = (a[k].rows[1] - a[k].rows[0]) * VAD.frame;
    const ma = mark(a[k].segments, n), mb = mark(b[k].segments, n);
    for (let i = 0; i < n; i++) {
      inter += ma[i] & mb[i];
      union += ma[i] | mb[i];
    }
  }
  return union ? inter / union : 1;
}

// ---- loading a model ---------------------------------------------------------------------

// An f32 tensor on `device`, for ONNX Runtime Web.
function gpuTensor(device, data, dims) {
  const buffer = device.createBuffer({
    size: Math.max(16, Math.ceil(data.byteLength / 16) * 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buffer, 0, data);
  return ort.Tensor.fromGpuBuffer(buffer, { dataType: "float32", dims: Array.from(dims) });
}

async function loadModel(entry) {
  if (state.loaded.has(entry.name)) return state.loaded.get(entry.name);
  const dir = `models/${entry.name}/`;
  const split = await fetchJson(dir + "split/split.json");
  const device = state.gpu.device;
  ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
  ort.env.wasm.numThreads = 1;
  // Every session on our GPUDevice, so that buffers pass between the engines without copies.
  const options = (preferredOutputLocation) => ({
    executionProviders: [{ name: "webgpu", device }],
    preferredOutputLocation,
  });
  const feedsGpu = {}, feedsCpu = {};
  for (const name of split.inputs) {
    const a = await fetchNpy(`${dir}test_${name}.npy`);
    feedsGpu[name] = gpuTensor(device, a.data, a.shape);
    feedsCpu[name] = new ort.Tensor("float32", a.data, Array.from(a.shape));
  }
  const expected = await fetchNpy(dir + "test_expected.npy");
  const frames = expected.shape[0];
  let clips = [{ clip: "all", rows: [0, frames] }];
  try {
    clips = (await fetchJson(dir + "clips.json")).test;
  } catch (e) {
    console.warn(`no clips.json: one clip (${messageOf(e)})`);
  }
  const modelBytes = await fetchBytes(dir + "model.onnx");
  const whole = await ort.InferenceSession.create(modelBytes, options("cpu"));
  const wholeWasm = await ort.InferenceSession.create(modelBytes, { executionProviders: ["wasm"] });

  // Which values feed a cut conv, and whether a segment makes them (then it writes straight
  // into the conv's input buffer) or not (then they are copied there on the GPU).
  const convInputs = new Map();
  for (const s of split.steps) if (s.kind === "conv") convInputs.set(s.input, (convInputs.get(s.input) ?? 0) + 1);
  const steps = [];
  for (const s of split.steps) {
    if (s.kind === "segment") {
      const bytes = await fetchBytes(dir + "split/" + s.file);
      const where = {};
      for (const o of s.outputs) where[o] = split.outputs.includes(o) ? "cpu" : "gpu-buffer";
      steps.push({
        ...s,
        gpu: await ort.InferenceSession.create(bytes, options(where)),
        cpu: await ort.InferenceSession.create(bytes, options("cpu")),
      });
      continue;
    }
    const f = `${dir}split/${s.folder}/`;
    const json = await (await fetch(f + "layer.json")).text();
    const layer = mc.Layer.fromFolder(json, await fetchBytes(f + "weight.npy"),
      s.hasBias ? await fetchBytes(f + "bias.npy") : undefined);
    if (!s.tables) throw new Error(`${s.name}: the split has no tables (build it with --tables)`);
    const tables = mc.Tables.fromBytes(await fetchBytes(dir + "split/" + s.tables));
    if (tables.specJson() !== layer.specJson()) throw new Error(`${s.name}: the tables are for another layer`);
    const zeros = new Float32Array(product(s.inputShape));
    const direct = state.gpu.direct(layer), madd = state.gpu.maddness(tables);
    const bound = {
      direct: direct.bind(zeros, s.inputShape),
      madd: madd.bind(zeros, s.inputShape),
      cpu: direct.bind(zeros, s.inputShape),
    };
    const asTensor = (buffer, dims) => ort.Tensor.fromGpuBuffer(buffer, { dataType: "float32", dims: Array.from(dims) });
    const output = {}, input = {};
    for (const k of ["direct", "madd"]) {
      output[k] = asTensor(bound[k].outputBuffer, bound[k].outputShape);
      input[k] = asTensor(bound[k].inputBuffer, bound[k].inputShape);
    }
    steps.push({ ...s, layer, tables, bound, inT: input, outT: output, sole: convInputs.get(s.input) === 1 });
  }
  const m = { entry, dir, split, steps, whole, wholeWasm, feedsGpu, feedsCpu, expected, frames, clips, device };
  state.loaded.set(entry.name, m);
  return m;
}

// ---- the four paths ----------------------------------------------------------------------

// The model's outputs as Float32Arrays, by name.
async function outputsOf(out, names) {
  const r = {};
  for (const n of names) r[n] = out[n].location === "cpu" ? out[n].data : await out[n].getData();
  return r;
}

async function runWhole(m) {
  const out = await m.whole.run(m.feedsGpu);
  return outputsOf(out, m.split.outputs);
}

async function runWholeWasm(m) {
  const out = await m.wholeWasm.run(m.feedsCpu);
  return outputsOf(out, m.split.outputs);
}

// The cut model with `kind` ("direct" or "madd") kernels, every value staying on the GPU.
async function runCut(m, kind) {
  const values = new Map(Object.entries(m.feedsGpu));
  const made = [];
  for (const s of m.steps) {
    if (s.kind === "segment") {
      const feeds = {}, fetches = {};
      for (const n of s.inputs) feeds[n] = values.get(n);
      for (const n of s.outputs) {
        const conv = m.steps.find((c) => c.kind === "conv" && c.input === n && c.sole);
        fetches[n] = conv ? conv.inT[kind] : null;
      }
      const out = await s.gpu.run(feeds, fetches);
      for (const n of s.outputs) {
        values.set(n, out[n]);
        if (fetches[n] === null && out[n].location === "gpu-buffer") made.push(out[n]);
      }
      continue;
    }
    const x = values.get(s.input);
    if (x !== s.inT[kind]) {
      // A graph input or a value several convs read: copied into this conv's input buffer.
      const enc = m.device.createCommandEncoder();
      enc.copyBufferToBuffer(x.gpuBuffer, 0, s.bound[kind].inputBuffer, 0, product(s.inputShape) * 4);
      m.device.queue.submit([enc.finish()]);
    }
    s.bound[kind].submit();
    values.set(s.output, s.outT[kind]);
  }
  const result = await outputsOf(Object.fromEntries(m.split.outputs.map((n) => [n, values.get(n)])), m.split.outputs);
  for (const t of made) t.dispose();
  return result;
}

// The cut model with exact convs, every hand-over through the CPU (ONNX Runtime's outputs
// read back, our input uploaded, our output read back).
async function runCutCpu(m, keep) {
  const values = new Map(Object.entries(m.feedsCpu));
  for (const s of m.steps) {
    if (s.kind === "segment") {
      const feeds = {};
      for (const n of s.inputs) feeds[n] = values.get(n);
      const out = await s.cpu.run(feeds);
      for (const n of s.outputs) values.set(n, out[n]);
      continue;
    }
    const x = values.get(s.input);
    if (keep) keep.set(s.name, x.data.slice());
    s.bound.cpu.write(x.data);
    s.bound.cpu.submit();
    const y = await s.bound.cpu.output();
    values.set(s.output, new ort.Tensor("float32", y.data, Array.from(y.shape)));
  }
  const r = {};
  for (const n of m.split.outputs) r[n] = values.get(n).data;
  return r;
}

async function timed(f) {
  const t0 = performance.now();
  const out = await f();
  return { ms: performance.now() - t0, out };
}

// ---- drawing -----------------------------------------------------------------------------

function drawCurves(canvas, m, exact, approx, segsExact, segsApprox, wrongOrt) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, left = 40, right = 10, top = 26, plotH = H - 96;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px system-ui, sans-serif";
  const x = (i) => left + ((W - left - right) * i) / m.frames;
  const y = (p) => top + plotH * (1 - p);
  ctx.strokeStyle = "#bbb";
  ctx.strokeRect(left, top, W - left - right, plotH);
  ctx.fillStyle = "#555";
  for (const p of [0, 0.5, 1]) ctx.fillText(p.toFixed(1), 8, y(p) + 4);
  ctx.setLineDash([4, 4]);
  ctx.beginPath();
  ctx.moveTo(left, y(0.5));
  ctx.lineTo(W - right, y(0.5));
  ctx.stroke();
  ctx.setLineDash([]);
  const curve = (p, color, width) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    for (let i = 0; i < p.length; i++) (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(i + 0.5), y(p[i]));
    ctx.stroke();
    ctx.lineWidth = 1;
  };
  if (wrongOrt) curve(wrongOrt, "#999", 1);
  curve(exact, "#1f5fbf", 2.5);
  curve(approx, "#d9480f", 1.5);
  // Clip boundaries and names.
  for (const c of m.clips) {
    ctx.strokeStyle = "#888";
    ctx.beginPath();
    ctx.moveTo(x(c.rows[0]), top);
    ctx.lineTo(x(c.rows[0]), H - 20);
    ctx.stroke();
    ctx.fillStyle = "#555";
    ctx.fillText(c.clip, x(c.rows[0]) + 4, H - 6);
  }
  // Speech segments, one band per path.
  const band = (segs, row, color, label) => {
    const yy = top + plotH + 8 + row * 18;
    ctx.fillStyle = "#555";
    ctx.fillText(label, 2, yy + 11);
    ctx.fillStyle = color;
    for (const c of segs) {
      for (const s of c.segments) {
        const a = x(c.rows[0] + s.start / VAD.frame), b = x(c.rows[0] + s.end / VAD.frame);
        ctx.fillRect(a, yy, Math.max(1, b - a), 12);
      }
    }
  };
  band(segsExact, 0, "#1f5fbf", "exact");
  band(segsApprox, 1, "#d9480f", "tables");
  // Legend, above the plot.
  let lx = left;
  const legend = (color, text) => {
    ctx.fillStyle = color;
    ctx.fillRect(lx, 8, 18, 4);
    ctx.fillText(text, lx + 24, 14);
    lx += 24 + ctx.measureText(text).width + 24;
  };
  legend("#1f5fbf", "exact (onnxruntime's stored output)");
  legend("#d9480f", "encoder convs by MADDNESS tables");
  if (wrongOrt) legend("#999", "ONNX Runtime Web, WebGPU EP (wrong)");
}

// ---- running -----------------------------------------------------------------------------

function setRow(id, cells) {
  const tds = $(id).querySelectorAll("td");
  cells.forEach((v, i) => {
    if (v !== undefined) tds[i + 3].textContent = v;
  });
}

function agreement(a, b) {
  let same = 0;
  for (let i = 0; i < a.length; i++) same += (a[i] > VAD.threshold) === (b[i] > VAD.threshold);
  return same / a.length;
}

async function run() {
  if (state.busy) return;
  state.busy = true;
  $("run").disabled = true;
  $("error").hidden = true;
  const results = $("results");
  for (const k of Object.keys(results.dataset)) delete results.dataset[k];
  const notes = [];
  try {
    const entry = state.models.find((e) => e.name === $("model").value);
    setStatus("running", `Loading ${entry.name}: ONNX Runtime Web sessions for the whole model and its segments…`);
    const m = await loadModel(entry);
    const out = m.split.outputs[0];
    const reps = Math.max(1, Math.min(100, Number(params.get("reps") || $("reps").value) || 5));

    // One checked run of each path.
    setStatus("running", "ONNX Runtime Web: the whole model (WebGPU, then wasm)…");
    const ortOut = (await runWhole(m))[out];
    const wasmOut = (await runWholeWasm(m))[out];
    setStatus("running", "The cut model with our exact kernels…");
    const exactOut = (await runCut(m, "direct"))[out];
    const convInputs = new Map();
    const cpuOut = (await runCutCpu(m, convInputs))[out];
    setStatus("running", "The cut model with MADDNESS tables…");
    const maddOut = (await runCut(m, "madd"))[out];
    const stored = m.expected.data;
    const rel = (a) => mc.relativeL2(a, stored);
    const checks = {
      ortRelL2: rel(ortOut), wasmRelL2: rel(wasmOut), cutExactRelL2: rel(exactOut),
      cutCpuRelL2: rel(cpuOut), maddRelL2: rel(maddOut),
    };
    Object.assign(results.dataset, checks);
    for (const k of ["cutExactRelL2", "cutCpuRelL2"]) {
      if (!(checks[k] < 1e-4)) throw new Error(`our exact path is wrong: ${k} = ${fmt(checks[k])} against onnxruntime's stored output (more than 1e-4)`);
    }
    const wrong = { ort: !(checks.ortRelL2 < 1e-4), wasm: !(checks.wasmRelL2 < 1e-4) };
    results.dataset.ortWrong = wrong.ort ? "1" : "0";
    results.dataset.wasmWrong = wrong.wasm ? "1" : "0";

    // End task: frame decisions and speech segments against the exact model (stored output).
    const segs = (p) => segmentsPerClip(p, m.clips);
    const segStored = segs(stored);
    const count = (s) => s.reduce((n, c) => n + c.segments.length, 0);
    const task = { frames: m.frames, segmentsExact: count(segStored) };
    const end = {};
    for (const [k, p] of Object.entries({ ort: ortOut, wasm: wasmOut, cutExact: exactOut, cutCpu: cpuOut, madd: maddOut })) {
      const sg = segs(p);
      end[k] = { agreement: agreement(stored, p), segments: count(sg), iou: speechIoU(segStored, sg), sg };
      task[`${k}Agreement`] = end[k].agreement;
      task[`${k}Segments`] = end[k].segments;
      task[`${k}SpeechIoU`] = end[k].iou;
    }
    task.agreement = end.madd.agreement;
    Object.assign(results.dataset, task);
    drawCurves($("curves"), m, stored, maddOut, segStored, end.madd.sg, wrong.ort ? ortOut : null);

    // Interleaved timing: one warm-up round, then `reps` rounds of the five paths in turn.
    const paths = { ort: () => runWhole(m), wasm: () => runWholeWasm(m), cutExact: () => runCut(m, "direct"),
      cutCpu: () => runCutCpu(m, null), madd: () => runCut(m, "madd") };
    const t = Object.fromEntries(Object.keys(paths).map((k) => [k, []]));
    for (let r = 0; r <= reps; r++) {
      setStatus("running", `Timing: round ${r} of ${reps} (round 0 is a warm-up)…`);
      const got = {};
      for (const [k, f] of Object.entries(paths)) {
        const x = await timed(f);
        got[k] = x.out[out];
        if (r > 0) t[k].push(x.ms);
      }
      // Every timed run still gives the checked outputs.
      if (mc.relativeL2(got.madd, maddOut) !== 0 || !(rel(got.cutExact) < 1e-4) || !(rel(got.cutCpu) < 1e-4)) {
        throw new Error(`round ${r}: an output changed between runs`);
      }
    }
    const ms = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]));
    for (const [k, v] of Object.entries(ms)) results.dataset[`ms${k[0].toUpperCase()}${k.slice(1)}`] = v;
    Object.assign(results.dataset, { reps, model: entry.name, adapter: state.gpu.adapterName, sharedDevice: "1" });
    const pct = (v) => `${(100 * v).toFixed(2)} %`;
    const row = (id, k, rel) => {
      const e = end[k];
      const w = k === "ort" || k === "wasm" ? wrong[k] : false;
      setRow(id, [fmt(ms[k]), `${fmt(ms.ort / ms[k])}×`, (w ? "WRONG: " : "") + fmt(rel),
        `${pct(e.agreement)} of ${m.frames}`, `${e.segments} of ${task.segmentsExact} (speech-time IoU ${fmt(e.iou)})`]);
      $(id).classList.toggle("wrong", w);
    };
    row("row-ort", "ort", checks.ortRelL2);
    row("row-wasm", "wasm", checks.wasmRelL2);
    row("row-exact", "cutExact", checks.cutExactRelL2);
    row("row-cpu", "cutCpu", checks.cutCpuRelL2);
    row("row-madd", "madd", checks.maddRelL2);
    if (wrong.ort) {
      notes.push(`ONNX Runtime Web's WebGPU EP computes this model WRONG here (relative L2 ${fmt(checks.ortRelL2)} against ` +
        `onnxruntime's stored output; ${pct(end.ort.agreement)} of frames agree), while its wasm EP is within ${fmt(checks.wasmRelL2)} ` +
        "and the same model with our kernels at the four convs within " + `${fmt(checks.cutExactRelL2)} (grey curve).`);
    }
    // Per conv: our two kernels on the input the exact model gives it, timed interleaved.
    setStatus("running", "Timing each replaced conv…");
    const body = $("convs").querySelector("tbody");
    body.textContent = "";
    let sumDirect = 0, sumMadd = 0;
    for (const s of m.steps.filter((x) => x.kind === "conv")) {
      const xIn = convInputs.get(s.name);
      const d = state.gpu.direct(s.layer).bind(xIn, s.inputShape);
      const a = state.gpu.maddness(s.tables).bind(xIn, s.inputShape);
      const kd = [], ka = [];
      for (let r = 0; r <= 2 * reps; r++) {
        const td = await d.timeOnce(), ta = await a.timeOnce();
        if (r === 0) continue;
        kd.push(Number.isFinite(td.kernelMs) ? td.kernelMs : td.wallMs);
        ka.push(Number.isFinite(ta.kernelMs) ? ta.kernelMs : ta.wallMs);
      }
      const yd = await d.output(), ya = await a.output();
      const q = 1 - mc.nmse(yd.data, ya.data, yd.shape);
      const md = median(kd), ma = median(ka);
      sumDirect += md;
      sumMadd += ma;
      const spec = JSON.parse(s.layer.specJson());
      const tr = document.createElement("tr");
      for (const v of [s.name, `${spec.in_channels} → ${spec.out_channels}, k ${spec.kernel.join("×")}, stride ${spec.stride.join(",")}`,
        `${(s.macs / 1e6).toFixed(1)} M`, s.tables.codebooks, fmt(md), fmt(ma), `${fmt(md / ma)}×`, fmt(q, 4)]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      body.append(tr);
    }
    results.dataset.convSpeedup = sumDirect / sumMadd;
    results.dataset.convClock = state.gpu.adapterInfo().timestamps ? "timestamp" : "wall";
    notes.push(`Replaced convs together: ${fmt(sumDirect)} ms direct, ${fmt(sumMadd)} ms tables (${fmt(sumDirect / sumMadd)}×, ` +
      `${results.dataset.convClock === "timestamp" ? "GPU timestamps" : "wall clock per run"}).`);
    notes.push(`Hand-over through the CPU instead of GPU buffers: ${fmt(ms.cutCpu - ms.cutExact)} ms more per model run ` +
      `(${m.steps.filter((x) => x.kind === "conv").length} convs, each input read back from ONNX Runtime and uploaded, each output read back).`);
    notes.push(`ONNX Runtime Web ${ort.env.versions?.web ?? ""} and our kernels share one GPUDevice; ` +
      `tables: ${m.entry.codebooks} codebooks, calibrated at build time on ${m.entry.calibration} (${m.entry.source === "fixture" ? "the repository fixture's 96 frames" : "the calibration clips"}).`);
    $("notes").textContent = notes.join(" ");
    setStatus("done", `Done: ${entry.name}, ${reps} interleaved rounds; with the tables ${pct(task.agreement)} of frames agree with the exact model.`);
  } catch (e) {
    console.error(e);
    showError(messageOf(e));
  } finally {
    state.busy = false;
    $("run").disabled = !state.gpu;
  }
}

async function main() {
  await init();
  state.models = await fetchJson("models/index.json");
  for (const e of state.models) {
    const opt = document.createElement("option");
    opt.value = e.name;
    opt.textContent = `${e.name}${e.source === "fixture" ? " (fixture calibration)" : ""}`;
    $("model").append(opt);
  }
  const wanted = params.get("model");
  if (wanted) {
    if (!state.models.some((e) => e.name === wanted)) throw new Error(`no model ${wanted} in this build`);
    $("model").value = wanted;
  }
  $("model-info").textContent = "silero VAD 6.2.3 (16 kHz sequence model): 339 frames of 32 ms from two test clips; " +
    "the four encoder convs (46 % of the conv MACs) are the cuts.";
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

main().catch((e) => {
  console.error(e);
  showError(messageOf(e));
});
