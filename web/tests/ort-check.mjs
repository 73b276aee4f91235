// By hand: ONNX Runtime Web on silero VAD (the build's models/silero_vad) with its own device,
// wasm and WebGPU EPs, against onnxruntime's stored output: prints the relative L2 of each, to
// check that a wrong WebGPU result does not come from sharing our GPUDevice (model.html).
//
//   bash web/build.sh && node web/tests/ort-check.mjs
//
// Environment: CHROMIUM (default /usr/bin/chromium), DIST (default web/dist).

import { serve, launch } from "./serve.mjs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const server = await serve(resolve(process.env.DIST || join(here, "..", "dist")));
const browser = await launch(process.env.CHROMIUM || "/usr/bin/chromium");
const page = await browser.newPage();
page.on("console", (m) => console.log(`[console.${m.type()}] ${m.text()}`));
await page.goto(`http://127.0.0.1:${server.address().port}/model.html`);
const r = await page.evaluate(async () => {
  const ort = await import("./ort/ort.webgpu.bundle.min.mjs");
  const mc = await import("./pkg/maddconv_web.js");
  await mc.default();
  ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
  ort.env.wasm.numThreads = 1;
  const b = async (u) => new Uint8Array(await (await fetch(u)).arrayBuffer());
  const npy = async (u) => new mc.NpyArray(await b(u), u);
  const d = "models/silero_vad/";
  const feeds = {};
  for (const n of ["input", "h", "c"]) { const a = await npy(d + `test_${n}.npy`); feeds[n] = new ort.Tensor("float32", a.data, Array.from(a.shape)); }
  const exp = await npy(d + "test_expected.npy");
  const out = {};
  for (const ep of ["wasm", "webgpu"]) {
    const s = await ort.InferenceSession.create(await b(d + "model.onnx"), { executionProviders: [ep] });
    const y = (await s.run(feeds)).speech_probs.data;
    out[ep] = mc.relativeL2(y, exp.data);
  }
  return out;
});
console.log(JSON.stringify(r));
await browser.close();
server.close();
