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
import { $, setStatus, showError, messageOf, fetchBytes, fetchJson, median, startGpu } from "./page.js";
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
  // The test inputs (index.json names a file per input) and onnxruntime's stored output. With
  // rowsPerRun 1 (a model whose batch is fixed to 1) each row is one run and the page runs one.
  const arrays = {};
  for (const name of split.inputs) {
    const file = entry.inputs?.[name];
    if (!file) throw new Error(`models/index.json names no test file for input ${name} of ${entry.name}`);
    arrays[name] = await fetchNpy(dir + file);
  }
  const expectedAll = await fetchNpy(dir + entry.expected);
  const perRow = entry.rowsPerRun === 1;
  const rows = perRow ? expectedAll.shape[0] : 1;
  const rowOf = (a, r) => {
    if (!perRow) return { data: a.data, shape: Array.from(a.shape) };
    const n = product(Array.from(a.shape).slice(1));
    return { data: a.data.subarray(r * n, (r + 1) * n), shape: [1, ...Array.from(a.shape).slice(1)] };
  };
  const feeds = new Map();
  // The feeds of row r: on the GPU, in JS, and the stored output.
  const feedsFor = (r) => {
    if (!feeds.has(r)) {
      const gpu = {}, cpu = {};
      for (const [name, a] of Object.entries(arrays)) {
        const x = rowOf(a, r);
        gpu[name] = gpuTensor(device, x.data, x.shape);
        cpu[name] = new ort.Tensor("float32", x.data, x.shape);
      }
      feeds.set(r, { gpu, cpu, expected: rowOf(expectedAll, r) });
    }
    return feeds.get(r);
  };
  let clips = null;
  if (entry.task === "vad") {
    const frames = expectedAll.shape[0];
    clips = [{ clip: "all", rows: [0, frames] }];
    try {
      clips = (await fetchJson(dir + "clips.json")).test;
    } catch (e) {
      console.warn(`no clips.json: one clip (${messageOf(e)})`);
    }
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
  const m = { entry, dir, split, steps, whole, wholeWasm, feedsFor, rows, arrays, clips, device, feedsGpu: null, feedsCpu: null };
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

// ---- the end tasks ----------------------------------------------------------------------

function agreement(a, b) {
  let same = 0;
  for (let i = 0; i < a.length; i++) same += (a[i] > VAD.threshold) === (b[i] > VAD.threshold);
  return same / a.length;
}

const pct = (v) => `${(100 * v).toFixed(2)} %`;

// silero VAD: frame decisions and speech segments of each path against the stored output.
const vadTask = {
  headers: ["frames agreeing (p > 0.5) with the stored output", "speech segments (speech-time IoU with the stored output's)"],
  info: (m) => `silero VAD 6.2.3 (16 kHz sequence model): ${m.frames} frames of 32 ms from two test clips; ` +
    "the four encoder convs (46 % of the conv MACs) are the cuts.",
  measure(m, stored, outs) {
    const segs = (p) => segmentsPerClip(p, m.clips);
    const segStored = segs(stored);
    const count = (sg) => sg.reduce((n, c) => n + c.segments.length, 0);
    const data = { frames: stored.length, segmentsExact: count(segStored) };
    const cells = {}, sgs = {};
    for (const [k, p] of Object.entries(outs)) {
      const sg = segs(p);
      sgs[k] = sg;
      const a = agreement(stored, p), iou = speechIoU(segStored, sg);
      Object.assign(data, { [`${k}Agreement`]: a, [`${k}Segments`]: count(sg), [`${k}SpeechIoU`]: iou });
      cells[k] = [`${pct(a)} of ${stored.length}`, `${count(sg)} of ${data.segmentsExact} (IoU ${fmt(iou)})`];
    }
    data.agreement = data.maddAgreement;
    return {
      data, cells,
      summary: `with the tables ${pct(data.maddAgreement)} of frames agree with the exact model`,
      draw: (canvas, wrongOrt) => drawCurves(canvas, m, stored, outs.madd, segStored, sgs.madd, wrongOrt ? outs.ort : null),
    };
  },
};

// The text detector: YOLOX boxes of each path matched to those of the stored output.
const DETECT = { score: 0.1, nms: 0.45, match: 0.5 };
const boxesTask = {
  headers: ["boxes matched (IoU ≥ 0.5) to the stored output's: recall / precision", "boxes found"],
  info: (m) => `ddddocr 1.6.1 text detector (YOLOX, 416×416): test photo ${m.row + 1} of ${m.rows} with words drawn on it ` +
    "(other photos than the calibration ones); the two stride-8 head convs Conv_248 and Conv_251 (14.1 % of the conv MACs) are the cuts.",
  measure(m, stored, outs, shape) {
    const [h, w] = m.arrays.images.shape.slice(2);
    const dec = (y) => mc.decodeYolox(y, shape, h, w, DETECT.score, DETECT.nms);
    const ref = dec(stored);
    const data = { boxesExact: ref.length / 5 };
    const cells = {}, boxes = {};
    for (const [k, y] of Object.entries(outs)) {
      const b = dec(y);
      boxes[k] = b;
      const [matched, nExact, nApprox] = mc.matchBoxes(ref, b, DETECT.match);
      const recall = nExact ? matched / nExact : 1, precision = nApprox ? matched / nApprox : 1;
      Object.assign(data, { [`${k}Recall`]: recall, [`${k}Precision`]: precision, [`${k}Boxes`]: nApprox });
      cells[k] = [`${pct(recall)} / ${pct(precision)}`, `${nApprox} (${matched} of ${nExact} matched)`];
    }
    data.agreement = Math.min(data.maddRecall, data.maddPrecision);
    return {
      data, cells,
      summary: `with the tables ${data.maddBoxes} boxes, recall ${pct(data.maddRecall)}, precision ${pct(data.maddPrecision)}`,
      draw: (canvas) => drawBoxes(canvas, m, ref, boxes.madd),
    };
  },
};

const TASKS = { vad: vadTask, boxes: boxesTask };

// ---- drawing -----------------------------------------------------------------------------

function drawCurves(canvas, m, exact, approx, segsExact, segsApprox, wrongOrt) {
  canvas.width = 960;
  canvas.height = 300;
  canvas.style.width = "";
  const ctx = canvas.getContext("2d");
  const frames = exact.length;
  const W = canvas.width, H = canvas.height, left = 40, right = 10, top = 26, plotH = H - 96;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px system-ui, sans-serif";
  const x = (i) => left + ((W - left - right) * i) / frames;
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

// The input photo (the model's CHW input, BGR 0..255) with the stored output's boxes (blue)
// and the tables' (orange), in input pixels.
function drawBoxes(canvas, m, exact, approx) {
  const img = m.arrays.images;
  const [c, h, w] = Array.from(img.shape).slice(1);
  canvas.width = w;
  canvas.height = h + 40;
  canvas.style.width = `${w}px`; // the photo at its own pixels, not stretched
  const ctx = canvas.getContext("2d");
  const x = m.feedsFor(m.row).cpu.images.data;
  const rgba = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) rgba.data[4 * i + k] = x[(c - 1 - k) * h * w + i];
    rgba.data[4 * i + 3] = 255;
  }
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.putImageData(rgba, 0, 40);
  const rects = (b, color, width, dash) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.setLineDash(dash);
    for (let i = 0; i < b.length; i += 5) ctx.strokeRect(b[i], 40 + b[i + 1], b[i + 2] - b[i], b[i + 3] - b[i + 1]);
    ctx.setLineDash([]);
    ctx.lineWidth = 1;
  };
  rects(exact, "#1f5fbf", 3, []);
  rects(approx, "#d9480f", 1.5, [4, 3]);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#1f5fbf";
  ctx.fillText(`exact: ${exact.length / 5} boxes`, 4, 15);
  ctx.fillStyle = "#d9480f";
  ctx.fillText(`tables: ${approx.length / 5} boxes (dashed)`, 130, 15);
  ctx.fillStyle = "#555";
  ctx.fillText("the model's input: the photo letterboxed to 416×416 (padding 114)", 4, 32);
}

// ---- running -----------------------------------------------------------------------------

function setRow(id, cells) {
  const tds = $(id).querySelectorAll("td");
  cells.forEach((v, i) => {
    if (v !== undefined) tds[i + 3].textContent = v;
  });
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
    const task = TASKS[entry.task];
    if (!task) throw new Error(`unknown task ${entry.task} of ${entry.name}`);
    setStatus("running", `Loading ${entry.name}: ONNX Runtime Web sessions for the whole model and its segments…`);
    const m = await loadModel(entry);
    m.row = Math.max(0, Math.min(m.rows - 1, Number($("row").value) || 0));
    const f = m.feedsFor(m.row);
    m.feedsGpu = f.gpu;
    m.feedsCpu = f.cpu;
    m.frames = f.expected.shape[0];
    $("model-info").textContent = task.info(m);
    const out = m.split.outputs[0];
    const reps = Math.max(0, Math.min(100, Number(params.get("reps") ?? $("reps").value)));

    // One checked run of each path.
    setStatus("running", "ONNX Runtime Web: the whole model (WebGPU, then wasm)…");
    const outs = {};
    outs.ort = (await runWhole(m))[out];
    outs.wasm = (await runWholeWasm(m))[out];
    setStatus("running", "The cut model with our exact kernels…");
    outs.cutExact = (await runCut(m, "direct"))[out];
    const convInputs = new Map();
    outs.cutCpu = (await runCutCpu(m, convInputs))[out];
    setStatus("running", "The cut model with MADDNESS tables…");
    outs.madd = (await runCut(m, "madd"))[out];
    const stored = f.expected.data;
    const rel = (a) => mc.relativeL2(a, stored);
    const checks = Object.fromEntries(Object.entries(outs).map(([k, y]) => [`${k}RelL2`, rel(y)]));
    Object.assign(results.dataset, checks);
    for (const k of ["cutExactRelL2", "cutCpuRelL2"]) {
      if (!(checks[k] < 1e-4)) throw new Error(`our exact path is wrong: ${k} = ${fmt(checks[k])} against onnxruntime's stored output (more than 1e-4)`);
    }
    const wrong = { ort: !(checks.ortRelL2 < 1e-4), wasm: !(checks.wasmRelL2 < 1e-4) };
    results.dataset.ortWrong = wrong.ort ? "1" : "0";
    results.dataset.wasmWrong = wrong.wasm ? "1" : "0";

    // The end task against the exact model (the stored output).
    const end = task.measure(m, stored, outs, f.expected.shape);
    Object.assign(results.dataset, end.data);
    end.draw($("curves"), wrong.ort);

    // Interleaved timing: one warm-up round, then `reps` rounds of the five paths in turn.
    const paths = { ort: () => runWhole(m), wasm: () => runWholeWasm(m), cutExact: () => runCut(m, "direct"),
      cutCpu: () => runCutCpu(m, null), madd: () => runCut(m, "madd") };
    const t = Object.fromEntries(Object.keys(paths).map((k) => [k, []]));
    for (let r = 1; r <= reps; r++) {
      setStatus("running", `Timing: round ${r} of ${reps} (after the checked runs, which were the warm-up)…`);
      const got = {};
      for (const [k, fn] of Object.entries(paths)) {
        const x = await timed(fn);
        got[k] = x.out[out];
        t[k].push(x.ms);
      }
      // Every timed run still gives the checked outputs.
      if (mc.relativeL2(got.madd, outs.madd) !== 0 || !(rel(got.cutExact) < 1e-4) || !(rel(got.cutCpu) < 1e-4)) {
        throw new Error(`round ${r}: an output changed between runs`);
      }
    }
    const ms = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]));
    for (const [k, v] of Object.entries(ms)) results.dataset[`ms${k[0].toUpperCase()}${k.slice(1)}`] = v;
    Object.assign(results.dataset, { reps, model: entry.name, row: m.row, adapter: state.gpu.adapterName, sharedDevice: "1" });
    const ths = $("results").querySelectorAll("thead th");
    ths[6].textContent = task.headers[0];
    ths[7].textContent = task.headers[1];
    const rowIds = { ort: "row-ort", wasm: "row-wasm", cutExact: "row-exact", cutCpu: "row-cpu", madd: "row-madd" };
    for (const [k, id] of Object.entries(rowIds)) {
      const w = wrong[k] ?? false;
      setRow(id, [fmt(ms[k]), `${fmt(ms.ort / ms[k])}×`, (w ? "WRONG: " : "") + fmt(checks[`${k}RelL2`]), ...end.cells[k]]);
      $(id).classList.toggle("wrong", w);
    }
    if (wrong.ort) {
      notes.push(`ONNX Runtime Web's WebGPU EP computes this model WRONG here (relative L2 ${fmt(checks.ortRelL2)} against ` +
        `onnxruntime's stored output), while its wasm EP is within ${fmt(checks.wasmRelL2)} ` +
        `and the same model with our kernels at the cut convs within ${fmt(checks.cutExactRelL2)}` +
        (entry.task === "vad" ? " (grey curve)." : "."));
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
      for (let r = 0; r <= Math.max(1, 2 * reps); r++) {
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
    if (reps > 0) {
      const diff = ms.cutCpu - ms.cutExact;
      notes.push(`Hand-over through the CPU instead of GPU buffers: ${diff >= 0 ? "+" : "−"}${fmt(Math.abs(diff))} ms per model run ` +
        `(${m.steps.filter((x) => x.kind === "conv").length} convs, each input read back from ONNX Runtime and uploaded, each output read back; ` +
        "a negative difference is timing noise).");
    } else {
      notes.push("No timed rounds (0 asked for): the checked runs only.");
    }
    notes.push(`ONNX Runtime Web ${ort.env.versions?.web ?? ""} and our kernels share one GPUDevice; ` +
      `tables: ${m.entry.codebooks} codebooks, calibrated at build time on ${m.entry.calibration} (${m.entry.source === "fixture" ? "the repository fixture's 96 frames" : "the calibration inputs"}).`);
    $("notes").textContent = notes.join(" ");
    setStatus("done", `Done: ${entry.name}, ${reps} interleaved rounds; ${end.summary}.`);
  } catch (e) {
    console.error(e);
    showError(messageOf(e));
  } finally {
    state.busy = false;
    $("run").disabled = !state.gpu;
  }
}

// Shows the chosen model's rows (for a model run row by row) and its description.
function selectModel() {
  const entry = state.models.find((e) => e.name === $("model").value);
  const rows = entry?.rowsPerRun === 1;
  $("row-label").hidden = !rows;
  $("model-info").textContent = entry ? `${entry.name}: task ${entry.task}, tables of ${entry.codebooks} codebooks.` : "";
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
  if (params.get("row") !== null) $("row").value = params.get("row");
  $("model").addEventListener("change", selectModel);
  selectModel();
  await startGpu(mc, state, run, params);
}

main().catch((e) => {
  console.error(e);
  showError(messageOf(e));
});
