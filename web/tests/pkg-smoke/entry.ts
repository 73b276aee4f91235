// A tiny app that uses the npm package the way a user does (bundled by esbuild, type-checked
// by tsc): the exact kernel against the CPU reference and MADDNESS tables trained in wasm, on
// a seeded image-like input. The page reports on document.body.dataset.
import init, { Gpu, Layer, Tables, nmse, relativeL2 } from "maddconv-web";

function input(h: number, w: number, seed: number): Float32Array {
  const x = new Float32Array(3 * h * w);
  let s = seed;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const c = Math.floor(i / (h * w));
    const p = i % (h * w);
    const y = Math.floor(p / w);
    x[i] = 0.5 + 0.3 * Math.sin((y + c) / 5) * Math.cos((p % w) / 7) + 0.05 * (s / 2 ** 32);
  }
  return x;
}

async function main(): Promise<void> {
  await init();
  const gpu: Gpu = await Gpu.create();
  const layer: Layer = Layer.demoFilter("sobel");
  const shape = [1, 3, 48, 40];
  const x = input(48, 40, 1);
  const exact = await gpu.direct(layer).run(x, shape, 2);
  const cpu = layer.reference(x, shape);
  const tables: Tables = Tables.train(layer, input(64, 64, 2), [1, 3, 64, 64], 9, undefined);
  const approx = await gpu.maddness(tables).run(x, shape, 2);
  const result = {
    adapter: gpu.adapterName,
    exactRelL2: relativeL2(exact.data, cpu.data),
    nmse: nmse(exact.data, approx.data, exact.shape),
    shape: Array.from(exact.shape),
  };
  document.body.dataset.result = JSON.stringify(result);
}

main().catch((e: unknown) => {
  document.body.dataset.error = String(e instanceof Error ? e.message : e);
});
