// Shared by the browser scripts (e2e.mjs, peer-table.mjs): a static file server for web/dist
// on 127.0.0.1 and the headless Chromium launch (playwright-core driving the system's
// Chromium; WebGPU through SwiftShader with --enable-unsafe-webgpu).

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".md": "text/markdown; charset=utf-8",
  ".json": "application/json",
  ".ts": "text/plain; charset=utf-8",
};

/// Serves `root` on a free port of 127.0.0.1; resolves to the listening server.
export function serve(root) {
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
      const file = normalize(join(root, path.endsWith("/") ? path + "index.html" : path));
      if (!file.startsWith(root)) throw Object.assign(new Error("outside"), { code: "ENOENT" });
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream" });
      res.end(body);
    } catch (e) {
      res.writeHead(e.code === "ENOENT" || e.code === "EISDIR" ? 404 : 500);
      res.end(String(e.code || e));
    }
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

/// Headless Chromium with WebGPU (`executablePath`: the system's Chromium).
export function launch(executablePath) {
  const args = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--enable-unsafe-webgpu",
  ];
  if (process.getuid && process.getuid() === 0) args.push("--no-sandbox");
  return chromium.launch({ executablePath, headless: true, args });
}

/// Waits until #status says done or error; returns the page's state, messages and numbers.
export async function waitForEnd(page, timeout) {
  await page.waitForFunction(
    () => ["done", "error"].includes(document.getElementById("status").dataset.state),
    null,
    { timeout, polling: 250 },
  );
  return page.evaluate(() => ({
    state: document.getElementById("status").dataset.state,
    status: document.getElementById("status").textContent,
    error: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
    adapter: document.getElementById("adapter").dataset.name,
    results: { ...document.getElementById("results").dataset },
    text: [...document.querySelectorAll("#results tbody tr")].map((r) => r.innerText.replace(/\s+/g, " ")),
  }));
}

/// Waits until #status says ready or error (the page loaded and asked for the GPU).
export function waitForReady(page) {
  return page.waitForFunction(
    () => ["ready", "error"].includes(document.getElementById("status").dataset.state),
    null,
    { timeout: 60_000 },
  );
}
