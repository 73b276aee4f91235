// The npm package (web/dist/pkg, made by build.sh) used as a user would: packed with
// `npm pack`, installed into a fresh app folder, type-checked by tsc against the package's
// types, bundled by esbuild, and run in headless Chromium (WebGPU on SwiftShader): the exact
// kernel must match the CPU reference and the MADDNESS error must be finite and < 1.
// Exits non-zero on any failure. Environment: CHROMIUM (default /usr/bin/chromium), DIST.

import { execFileSync } from "node:child_process";
import { mkdtemp, mkdir, copyFile, writeFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { serve, launch } from "./serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const WEB = resolve(here, "..");
const DIST = resolve(process.env.DIST || join(WEB, "dist"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ["ignore", "pipe", "inherit"] }).toString();

const work = await mkdtemp(join(tmpdir(), "maddconv-pkg-"));
let failed = false;
try {
  // npm pack → tarball; a fresh app that depends on it.
  const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", work, join(DIST, "pkg")], WEB));
  const tarball = join(work, packed[0].filename);
  console.log(`pkg: packed ${packed[0].filename} (${packed[0].size} bytes, ${packed[0].entryCount} files)`);
  const app = join(work, "app");
  await mkdir(app);
  await writeFile(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  run("npm", ["install", "--no-audit", "--no-fund", "--offline", tarball], app);
  for (const f of ["entry.ts", "tsconfig.json"]) await copyFile(join(here, "pkg-smoke", f), join(app, f));

  // Types: tsc against the installed package's .d.ts.
  execFileSync(join(WEB, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.json"], { cwd: app, stdio: "inherit" });
  console.log("pkg: tsc --noEmit passed against the package's types");

  // Bundle; the wasm goes next to the bundle (esbuild leaves new URL(..., import.meta.url)).
  const out = join(app, "site");
  await mkdir(out);
  await build({
    entryPoints: [join(app, "entry.ts")],
    bundle: true,
    format: "esm",
    outfile: join(out, "bundle.js"),
    absWorkingDir: app,
    logLevel: "warning",
  });
  await copyFile(join(app, "node_modules", "maddconv-web", "maddconv_web_bg.wasm"), join(out, "maddconv_web_bg.wasm"));
  await writeFile(
    join(out, "index.html"),
    '<!doctype html><meta charset="utf-8"><title>pkg</title><script type="module" src="bundle.js"></script>',
  );
  console.log(`pkg: bundled by esbuild: ${(await readdir(out)).join(", ")}`);

  const server = await serve(out);
  const browser = await launch(CHROMIUM);
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.waitForFunction(() => document.body && (document.body.dataset.result || document.body.dataset.error), null, {
      timeout: 120_000,
    });
    const { result, error } = await page.evaluate(() => ({ ...document.body.dataset }));
    if (error) throw new Error(`the bundled app failed: ${error}`);
    const r = JSON.parse(result);
    console.log(`pkg: ${JSON.stringify(r)}`);
    const ok = r.exactRelL2 < 1e-5 && Number.isFinite(r.nmse) && r.nmse >= 0 && r.nmse < 1 && r.shape.join() === "1,6,48,40" && errors.length === 0;
    if (!ok) throw new Error(`unexpected result ${result} ${errors.join(" | ")}`);
    console.log("pkg: the bundled package ran in Chromium: exact kernel vs CPU reference and MADDNESS checked");
  } finally {
    await browser.close();
    server.close();
  }
} catch (e) {
  failed = true;
  console.error(`pkg: FAILED: ${e && e.stack ? e.stack : e}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
