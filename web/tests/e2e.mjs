// End-to-end test of the web demo in headless Chromium (playwright-core driving the system's
// Chromium; WebGPU through SwiftShader with --enable-unsafe-webgpu).
//
// Serves web/dist (built by web/build.sh) on 127.0.0.1 with node's http module, then:
//  1. runs the demo for each filter (?autorun=1) and checks that it finished, that the exact
//     kernel matches the CPU reference, that the reported NMSE is a finite number within a
//     sane bound, and that the canvases were drawn (non-blank pixels);
//  2. saves a screenshot of the first run to $ARTIFACTS/demo.png (default web/artifacts);
//  3. runs the real-layer page (layers.html) on a fixture layer with training data, on one
//     without (exact kernel and ONNX Runtime Web only), and on silero_L04 when the build has
//     the shared data's layers: our exact kernel and ONNX Runtime Web against the stored output
//     of another engine and against each other, the MADDNESS error within a bound, all times
//     reported; saves $ARTIFACTS/layers.png;
//  4. runs the whole-model page (model.html) on silero VAD (and, with the shared data, on the
//     ddddocr text detector: boxes): the cut model with our exact
//     kernels and ONNX Runtime Web's wasm EP against onnxruntime's stored output, the frame
//     agreement with the tables within a bound, all times reported; saves $ARTIFACTS/model.png;
//  5. checks the clear messages when WebGPU is missing and when the adapter lacks a limit.
// Exits non-zero on any failure. Environment: CHROMIUM (default /usr/bin/chromium),
// DIST, ARTIFACTS, E2E_TIMEOUT_S (default 1200, for the whole script).

import { readFile, mkdir } from "node:fs/promises";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { serve, launch, waitForEnd as waitForEndOf, waitForReady } from "./serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const DIST = resolve(process.env.DIST || join(here, "..", "dist"));
const ARTIFACTS = resolve(process.env.ARTIFACTS || join(here, "..", "artifacts"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TOTAL_S = Number(process.env.E2E_TIMEOUT_S || 1200);
const RUN_TIMEOUT_MS = 300_000;
// The MADDNESS approximation of these filters on a held-out photo: far better than predicting
// each channel's mean (NMSE 1); a broken table or kernel gives NMSE ≥ 1 or NaN.
const NMSE_BOUND = 0.5;
// silero VAD's frame agreement with tables calibrated on the fixture's 96 frames only.
const FIXTURE_MIN_AGREEMENT = 0.93;

const watchdog = setTimeout(() => {
  console.error(`e2e: FAILED: still running after ${TOTAL_S} s`);
  process.exit(1);
}, TOTAL_S * 1000);

const failures = [];
function check(cond, what) {
  console.log(`${cond ? "ok  " : "FAIL"} ${what}`);
  if (!cond) failures.push(what);
}

// Fraction of a canvas's pixels that are opaque and not near black / not all equal.
async function canvasStats(page, id) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let opaque = 0;
    let lit = 0;
    let min = 255;
    let max = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] === 255) opaque++;
      const v = Math.max(d[i], d[i + 1], d[i + 2]);
      if (v > 16) lit++;
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    const n = d.length / 4;
    return { w: c.width, h: c.height, opaque: opaque / n, lit: lit / n, min, max };
  }, id);
}

const waitForEnd = (page) => waitForEndOf(page, RUN_TIMEOUT_MS);

async function newPage(browser, log, init) {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on("console", (m) => log.push(`[console.${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => log.push(`[pageerror] ${e.message}`));
  if (init) await page.addInitScript(init);
  return page;
}

const server = await serve(DIST);
const base = `http://127.0.0.1:${server.address().port}/`;
console.log(`e2e: serving ${DIST} at ${base}`);
let browser;
try {
  browser = await launch(CHROMIUM);
  console.log(`e2e: ${CHROMIUM} ${browser.version()}`);

  for (const [i, filter] of ["sobel", "gaussian"].entries()) {
    const log = [];
    const page = await newPage(browser, log);
    const t0 = Date.now();
    await page.goto(base, { waitUntil: "load" });
    await waitForReady(page);
    await page.selectOption("#filter", filter);
    await page.click("#run");
    const r = await waitForEnd(page);
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    console.log(`--- ${filter} (${secs} s): ${r.status} ${r.error}`);
    console.log(`    adapter: ${r.adapter}`);
    for (const line of r.text) console.log(`    ${line}`);
    check(r.state === "done", `${filter}: the demo finished (state ${r.state}) ${r.error}`);
    const rel = Number(r.results.directRelL2);
    check(Number.isFinite(rel) && rel < 1e-5, `${filter}: exact kernel vs CPU reference, relative L2 ${rel} < 1e-5`);
    const directMs = Number(r.results.directMs);
    check(Number.isFinite(directMs) && directMs >= 0, `${filter}: direct kernel time ${directMs} ms reported`);
    const nmse = Number(r.results.nmse);
    check(Number.isFinite(nmse) && nmse >= 0 && nmse < NMSE_BOUND, `${filter}: NMSE ${r.results.nmse} finite, in [0, ${NMSE_BOUND})`);
    const maddMs = Number(r.results.maddMs);
    check(Number.isFinite(maddMs) && maddMs >= 0, `${filter}: MADDNESS kernel time ${maddMs} ms reported`);
    const canvases = ["canvas-input", "canvas-exact", "canvas-approx", "canvas-diff"];
    for (const id of canvases) {
      const s = await canvasStats(page, id);
      const drawn = s.opaque === 1 && s.max > s.min && (id === "canvas-diff" || s.lit > 0.05);
      check(drawn, `${filter}: #${id} drawn (${s.w}×${s.h}, opaque ${s.opaque.toFixed(3)}, lit ${s.lit.toFixed(3)}, range ${s.min}..${s.max})`);
    }
    const errors = log.filter((l) => l.startsWith("[pageerror]") || l.startsWith("[console.error]"));
    check(errors.length === 0, `${filter}: no page errors ${errors.join(" | ")}`);
    if (i === 0) {
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "demo.png"), fullPage: true });
      console.log(`e2e: screenshot ${join(ARTIFACTS, "demo.png")}`);

      // The table file: download the trained tables, load them back, get the same result.
      const [download] = await Promise.all([page.waitForEvent("download"), page.click("#tables-download")]);
      const tablesPath = join(ARTIFACTS, download.suggestedFilename());
      await download.saveAs(tablesPath);
      await page.setInputFiles("#tables-file", tablesPath);
      await page.selectOption("#train", "file");
      await page.click("#run");
      const again = await waitForEnd(page);
      check(
        again.state === "done" && again.results.nmse === r.results.nmse && again.results.trainMs === undefined,
        `${filter}: tables downloaded as ${download.suggestedFilename()} and loaded back give the same NMSE (${again.results.nmse} vs ${r.results.nmse}) ${again.error}`,
      );
      // Tables of this layer refused for another.
      await page.selectOption("#filter", "gaussian");
      await page.click("#run");
      const wrong = await waitForEnd(page);
      check(
        wrong.state === "error" && /for another layer/.test(wrong.error),
        `${filter} tables used for the gaussian layer: clear message "${wrong.error}"`,
      );
    }
    if (failures.length) for (const l of log) console.log(`    ${l}`);
    await page.close();
  }

  // The real-layer page, next to ONNX Runtime Web. Bounds on 1 − NMSE are for the page's
  // defaults (seeded training, so the runs are repeatable): measured 0.53 and 0.95.
  const index = JSON.parse(await readFile(join(DIST, "layers", "index.json"), "utf8"));
  const layerCases = [
    { name: "mtcnn_pnet_conv3_trainable", minFit: 0.3, screenshot: true },
    { name: "silero_L02_blocks", minFit: null },
  ];
  // The screenshot shows silero_L04 when the build has it, else the fixture.
  if (index.some((l) => l.name === "silero_L04")) {
    layerCases[0].screenshot = false;
    layerCases.push({ name: "silero_L04", minFit: 0.9, screenshot: true });
  } else console.log("e2e: the build has no shared layers; silero_L04 not run");
  for (const c of layerCases) {
    const log = [];
    const page = await newPage(browser, log);
    const t0 = Date.now();
    await page.goto(`${base}layers.html?layer=${c.name}`, { waitUntil: "load" });
    await waitForReady(page);
    await page.fill("#reps", "5");
    await page.click("#run");
    const r = await waitForEnd(page);
    const d = r.results;
    console.log(`--- layers.html ${c.name} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${r.status} ${r.error}`);
    for (const line of r.text) console.log(`    ${line}`);
    console.log(`    ${await page.evaluate(() => document.getElementById("notes").textContent)}`);
    check(r.state === "done", `${c.name}: the layers page finished (state ${r.state}) ${r.error}`);
    const num = (k) => Number(d[k]);
    check(num("directRelL2") < 1e-5, `${c.name}: our exact kernel vs the stored output, relative L2 ${d.directRelL2} < 1e-5`);
    check(d.ortError === undefined, `${c.name}: ONNX Runtime Web ran ${d.ortError || ""}`);
    check(num("ortRelL2") < 1e-5, `${c.name}: ONNX Runtime Web vs the stored output, relative L2 ${d.ortRelL2} < 1e-5`);
    check(num("ortVsOurs") < 1e-5, `${c.name}: ONNX Runtime Web vs our exact kernel, relative L2 ${d.ortVsOurs} < 1e-5`);
    for (const k of ["directWallMs", "ortWallMs"]) check(num(k) > 0, `${c.name}: ${k} = ${d[k]} reported`);
    if (c.minFit === null) {
      check(d.nmse === undefined && d.maddMs === undefined, `${c.name}: no train.npy, so no MADDNESS row`);
    } else {
      const fit = 1 - num("nmse");
      check(fit >= c.minFit && fit <= 1, `${c.name}: MADDNESS 1 − NMSE ${fit} ≥ ${c.minFit} (${d.codebooks} codebooks)`);
      check(num("maddWallMs") > 0, `${c.name}: maddWallMs = ${d.maddWallMs} reported`);
    }
    const errors = log.filter((l) => l.startsWith("[pageerror]") || l.startsWith("[console.error]"));
    check(errors.length === 0, `${c.name}: no page errors ${errors.join(" | ")}`);
    if (c.screenshot) {
      await page.screenshot({ path: join(ARTIFACTS, "layers.png"), fullPage: true });
      console.log(`e2e: screenshot ${join(ARTIFACTS, "layers.png")}`);
    }
    if (failures.length) for (const l of log) console.log(`    ${l}`);
    await page.close();
  }

  // The whole model (model.html): silero VAD cut at its four encoder convs; ONNX Runtime Web
  // runs the rest on our GPUDevice. Our exact paths must reproduce onnxruntime's stored output;
  // the tables must keep the VAD's frame decisions (measured 98.82 % with the shared data's
  // calibration clips, 96.17 % with the fixture's 96 frames).
  {
    const log = [];
    const page = await newPage(browser, log);
    const t0 = Date.now();
    await page.goto(`${base}model.html?model=silero_vad&reps=1`, { waitUntil: "load" });
    await waitForReady(page);
    await page.click("#run");
    const r = await waitForEnd(page);
    const d = r.results;
    const num = (k) => Number(d[k]);
    console.log(`--- model.html silero_vad (${((Date.now() - t0) / 1000).toFixed(1)} s): ${r.status} ${r.error}`);
    for (const line of r.text) console.log(`    ${line}`);
    console.log(`    ${await page.evaluate(() => document.getElementById("notes").textContent)}`);
    check(r.state === "done", `model.html: finished (state ${r.state}) ${r.error}`);
    for (const k of ["cutExactRelL2", "cutCpuRelL2", "wasmRelL2"]) {
      check(num(k) < 1e-5, `model.html: ${k} = ${d[k]} < 1e-5 against onnxruntime's stored output`);
    }
    check(Number.isFinite(num("ortRelL2")) && d.ortWrong === (num("ortRelL2") < 1e-4 ? "0" : "1"),
      `model.html: ONNX Runtime Web (WebGPU) relative L2 ${d.ortRelL2} reported, WRONG flag ${d.ortWrong} consistent`);
    check(num("cutExactAgreement") === 1, `model.html: the cut model with exact convs agrees on every frame (${d.cutExactAgreement})`);
    const models = JSON.parse(await readFile(join(DIST, "models", "index.json"), "utf8"));
    const shared = models.find((e) => e.name === "silero_vad").source === "data";
    const minAgree = shared ? 0.97 : FIXTURE_MIN_AGREEMENT;
    check(num("maddAgreement") >= minAgree && num("maddAgreement") <= 1,
      `model.html: with the tables ${d.maddAgreement} of ${d.frames} frames agree (≥ ${minAgree})`);
    check(num("maddSegments") > 0 && num("segmentsExact") > 0, `model.html: speech segments ${d.maddSegments} / ${d.segmentsExact}`);
    for (const k of ["msOrt", "msWasm", "msCutExact", "msCutCpu", "msMadd", "convSpeedup"]) {
      check(num(k) > 0, `model.html: ${k} = ${d[k]} reported`);
    }
    const c = await canvasStats(page, "curves");
    check(c.max - c.min > 100, `model.html: the curves were drawn (pixel range ${c.min}..${c.max})`);
    const errors = log.filter((l) => l.startsWith("[pageerror]") || l.startsWith("[console.error]"));
    check(errors.length === 0, `model.html: no page errors ${errors.join(" | ")}`);
    await page.screenshot({ path: join(ARTIFACTS, "model.png"), fullPage: true });
    console.log(`e2e: screenshot ${join(ARTIFACTS, "model.png")}`);
    if (failures.length) for (const l of log) console.log(`    ${l}`);
    await page.close();
  }

  // The text detector (shared data only): ddddocr cut at two head convs, one test photo, the
  // checked runs only (a run of the whole model takes about 40 s on SwiftShader). Measured: our
  // exact paths within 6.1e-7, 12 of 12 boxes with the tables and one extra.
  const models = JSON.parse(await readFile(join(DIST, "models", "index.json"), "utf8"));
  if (models.some((e) => e.name === "ddddocr_det")) {
    const log = [];
    const page = await newPage(browser, log);
    const t0 = Date.now();
    await page.goto(`${base}model.html?model=ddddocr_det&row=0&reps=0`, { waitUntil: "load" });
    await waitForReady(page);
    await page.click("#run");
    const r = await waitForEndOf(page, 2 * RUN_TIMEOUT_MS); // measured 175 s
    const d = r.results;
    const num = (k) => Number(d[k]);
    console.log(`--- model.html ddddocr_det (${((Date.now() - t0) / 1000).toFixed(1)} s): ${r.status} ${r.error}`);
    for (const line of r.text) console.log(`    ${line}`);
    check(r.state === "done", `model.html ddddocr: finished (state ${r.state}) ${r.error}`);
    for (const k of ["cutExactRelL2", "cutCpuRelL2", "wasmRelL2"]) {
      check(num(k) < 1e-5, `model.html ddddocr: ${k} = ${d[k]} < 1e-5 against onnxruntime's stored output`);
    }
    check(Number.isFinite(num("ortRelL2")) && d.ortWrong === (num("ortRelL2") < 1e-4 ? "0" : "1"),
      `model.html ddddocr: ONNX Runtime Web (WebGPU) relative L2 ${d.ortRelL2}, WRONG flag ${d.ortWrong} consistent`);
    check(num("boxesExact") > 0 && num("cutExactRecall") === 1 && num("cutExactPrecision") === 1,
      `model.html ddddocr: the cut exact model finds the stored output's ${d.boxesExact} boxes, no more`);
    check(num("maddRecall") >= 0.9 && num("maddPrecision") >= 0.8,
      `model.html ddddocr: with the tables recall ${d.maddRecall} ≥ 0.9, precision ${d.maddPrecision} ≥ 0.8`);
    const c = await canvasStats(page, "curves");
    check(c.w === 416 && c.max - c.min > 100, `model.html ddddocr: the photo and boxes were drawn (${c.w}×${c.h})`);
    const errors = log.filter((l) => l.startsWith("[pageerror]") || l.startsWith("[console.error]"));
    check(errors.length === 0, `model.html ddddocr: no page errors ${errors.join(" | ")}`);
    await page.screenshot({ path: join(ARTIFACTS, "model-boxes.png"), fullPage: true });
    console.log(`e2e: screenshot ${join(ARTIFACTS, "model-boxes.png")}`);
    if (failures.length) for (const l of log) console.log(`    ${l}`);
    await page.close();
  } else console.log("e2e: the build has no ddddocr_det (shared data); its model page not run");

  // Clear messages instead of a broken page.
  const cases = [
    {
      what: "no WebGPU (navigator.gpu removed)",
      init: () => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }),
      expect: /WebGPU is not available/,
    },
    {
      what: "adapter with 8 KiB of workgroup memory",
      init: () =>
        Object.defineProperty(GPUSupportedLimits.prototype, "maxComputeWorkgroupStorageSize", {
          get: () => 8192,
        }),
      expect: /maxComputeWorkgroupStorageSize = 8192.*16384/,
    },
  ];
  cases.push({ ...cases[0], what: `layers.html: ${cases[0].what}`, url: `${base}layers.html` });
  cases.push({ ...cases[0], what: `model.html: ${cases[0].what}`, url: `${base}model.html` });
  for (const c of cases) {
    const log = [];
    const page = await newPage(browser, log, c.init);
    await page.goto(c.url || base, { waitUntil: "load" });
    await waitForReady(page);
    const r = await page.evaluate(() => ({
      state: document.getElementById("status").dataset.state,
      error: document.getElementById("error").textContent,
      run: document.getElementById("run").disabled,
    }));
    check(r.state === "error" && c.expect.test(r.error) && r.run, `${c.what}: clear message "${r.error}"`);
    await page.close();
  }
} catch (e) {
  failures.push(String(e && e.stack ? e.stack : e));
  console.error(e);
} finally {
  if (browser) await browser.close().catch(() => {});
  await new Promise((ok) => server.close(ok));
  clearTimeout(watchdog);
}

if (failures.length) {
  console.error(`e2e: FAILED (${failures.length}):\n  ${failures.join("\n  ")}`);
  process.exit(1);
}
console.log("e2e: all checks passed");
