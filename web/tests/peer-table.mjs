// The table of web/README.md: every layer of the build (web/dist/layers) on layers.html, our
// exact kernel, our MADDNESS tables and ONNX Runtime Web (WebGPU EP), interleaved, in headless
// Chromium. Prints a markdown table and writes the page's numbers as JSON.
//
//   node web/tests/peer-table.mjs [--reps N] [--layers A,B,...] [--json FILE]
//   node web/tests/peer-table.mjs --model silero_vad|ddddocr_det [--row R] [--reps N] [--json FILE]
//
// With --model, the whole-model page (model.html) instead: ONNX Runtime Web on the whole model
// (WebGPU and wasm EPs) and the model cut at the replaced convs with our exact kernels (GPU or
// CPU hand-over) and our tables, interleaved; then each replaced conv's kernels.
//
// Environment: CHROMIUM (default /usr/bin/chromium), DIST (default web/dist).

import { writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { serve, launch, waitForEnd, waitForReady } from "./serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const DIST = resolve(process.env.DIST || join(here, "..", "dist"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
};
const reps = Number(opt("--reps", "10"));
if (!Number.isInteger(reps) || reps < 1 || reps > 200) {
  console.error(`peer-table: --reps ${opt("--reps")} is not a whole number in 1..200`);
  process.exit(2);
}
const model = opt("--model", null);
if (model) {
  await modelTable(model);
  process.exit(0);
}
const index = JSON.parse(readFileSync(join(DIST, "layers", "index.json"), "utf8"));
const wanted = opt("--layers", null);
const names = wanted ? wanted.split(",") : index.map((l) => l.name);
for (const n of names) {
  if (!index.some((l) => l.name === n)) {
    console.error(`peer-table: no layer ${n} in ${DIST}/layers (have: ${index.map((l) => l.name).join(", ")})`);
    process.exit(2);
  }
}

const server = await serve(DIST);
const base = `http://127.0.0.1:${server.address().port}/`;
const browser = await launch(CHROMIUM);
const rows = [];
let failed = 0;
try {
  for (const name of names) {
    const page = await browser.newPage();
    await page.goto(`${base}layers.html?layer=${name}`, { waitUntil: "load" });
    await waitForReady(page);
    await page.fill("#reps", String(reps));
    await page.click("#run");
    const r = await waitForEnd(page, 1_800_000);
    await page.close();
    if (r.state !== "done") {
      console.error(`peer-table: ${name}: ${r.error}`);
      failed++;
      continue;
    }
    rows.push({ name, adapter: r.adapter, chromium: browser.version(), ...r.results });
    console.error(`peer-table: ${name} done`);
  }
} finally {
  await browser.close();
  server.close();
}

const n = (v, d = 3) => (v === undefined || !Number.isFinite(Number(v)) ? "–" : Number(v).toPrecision(d));
console.log(`Adapter: ${rows[0]?.adapter ?? "?"}, Chromium ${rows[0]?.chromium ?? "?"}, ${reps} interleaved rounds.\n`);
console.log("| layer | ours exact ms | ours MADDNESS ms | ORT Web ms | ORT / ours exact | ours exact / MADDNESS | C | 1 − NMSE | ORT vs ours rel. L2 | ours, ORT vs stored rel. L2 |");
console.log("|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  const ratio = (a, b) => (Number.isFinite(Number(a)) && Number.isFinite(Number(b)) ? (Number(a) / Number(b)).toFixed(2) : "–");
  console.log(
    `| ${r.name} | ${n(r.directWallMs)} | ${n(r.maddWallMs)} | ${n(r.ortWallMs)} | ${ratio(r.ortWallMs, r.directWallMs)} | ` +
      `${ratio(r.directWallMs, r.maddWallMs)} | ${r.codebooks ?? "–"} | ${r.nmse === undefined ? "–" : (1 - Number(r.nmse)).toFixed(4)} | ` +
      `${n(r.ortVsOurs, 2)} | ${n(r.directRelL2, 2)}, ${n(r.ortRelL2, 2)} |`,
  );
}
const jsonPath = opt("--json", null);
if (jsonPath) await writeFile(jsonPath, JSON.stringify(rows, null, 1) + "\n");
if (failed) {
  console.error(`peer-table: ${failed} layer(s) failed`);
  process.exit(1);
}

async function modelTable(name) {
  const server = await serve(DIST);
  const browser = await launch(CHROMIUM);
  let r, convs, notes;
  try {
    const page = await browser.newPage();
    const row = Number(opt("--row", "0"));
    await page.goto(`http://127.0.0.1:${server.address().port}/model.html?model=${name}&reps=${reps}&row=${row}`, { waitUntil: "load" });
    await waitForReady(page);
    await page.click("#run");
    r = await waitForEnd(page, 3_600_000);
    convs = await page.evaluate(() => [...document.querySelectorAll("#convs tbody tr")].map((t) => [...t.cells].map((c) => c.textContent)));
    notes = await page.evaluate(() => document.getElementById("notes").textContent);
  } finally {
    await browser.close();
    server.close();
  }
  if (r.state !== "done") {
    console.error(`peer-table: ${name}: ${r.error}`);
    process.exit(1);
  }
  const d = r.results;
  const n = (v, k = 3) => (Number.isFinite(Number(v)) ? Number(v).toPrecision(k) : "–");
  const pct = (v) => `${(100 * Number(v)).toFixed(2)} %`;
  console.log(`Adapter: ${r.adapter}, Chromium ${browser.version()}, ${name}, ${reps} interleaved rounds.\n`);
  const vad = d.frames !== undefined;
  console.log(`| path | convs run by | hand-over | ms per model run | ORT Web (WebGPU) / path | rel. L2 vs stored | ${vad ? "frames agreeing | speech segments (IoU)" : "box recall / precision | boxes found"} |`);
  console.log("|---|---|---|---|---|---|---|---|");
  const rows = [
    ["ONNX Runtime Web, whole model", "ORT Web WebGPU EP", "–", "ort"],
    ["ONNX Runtime Web, whole model", "ORT Web wasm EP (CPU)", "–", "wasm"],
    ["cut model", "our direct kernel", "GPU buffers", "cutExact"],
    ["cut model", "our direct kernel", "through the CPU", "cutCpu"],
    ["cut model", "our MADDNESS tables", "GPU buffers", "madd"],
  ];
  for (const [path, by, hand, k] of rows) {
    const ms = d[`ms${k[0].toUpperCase()}${k.slice(1)}`];
    const rel = d[`${k}RelL2`];
    const wrong = (k === "ort" && d.ortWrong === "1") || (k === "wasm" && d.wasmWrong === "1");
    const task = vad
      ? `${pct(d[`${k}Agreement`])} | ${d[`${k}Segments`]} of ${d.segmentsExact} (${n(d[`${k}SpeechIoU`])})`
      : `${pct(d[`${k}Recall`])} / ${pct(d[`${k}Precision`])} | ${d[`${k}Boxes`]} (stored output: ${d.boxesExact})`;
    console.log(`| ${path} | ${by} | ${hand} | ${n(ms)} | ${(Number(d.msOrt) / Number(ms)).toFixed(2)} | ${wrong ? "**WRONG** " : ""}${n(rel, 2)} | ${task} |`);
  }
  console.log("\n| replaced conv | shape | MACs | C | direct ms | MADDNESS ms | speedup | 1 − NMSE in place |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const c of convs) console.log(`| ${c.join(" | ")} |`);
  console.log(`\n${notes}`);
  const jsonPath = opt("--json", null);
  if (jsonPath) await writeFile(jsonPath, JSON.stringify({ adapter: r.adapter, results: d, convs, notes }, null, 1) + "\n");
}
