"""In-browser inference: a static page that runs our ONNX models on onnxruntime-web (place S5).

    site = write_site(OUT_DIR, classifier=..., gpt=...)     # index.html, app.js, models, ORT files
    result = run_in_chromium(site, screenshot=PNG)          # what the page computed, read back

onnxruntime-web (npm, Microsoft) is ONNX Runtime compiled to WebAssembly. The page uses its
WASM backend: ort.wasm.min.js (50 kB) loads ort-wasm-simd-threaded.mjs and .wasm (14 MB), all
three copied into the site, so the page works offline from any static server
(`python -m http.server -d OUT_DIR`). The 14 MB are not committed: find_onnxruntime_web() takes
them from the npm package unpacked in the cache (~/.cache/deepatlas/onnxruntime-web-1.30.0),
put there once by fetch_onnxruntime_web() (`npm pack onnxruntime-web@1.30.0`, the ordinary npm
client) or named by $DEEPATLAS_ORT_WEB. One thread (ort.env.wasm.numThreads = 1): threads in
WebAssembly need a cross-origin-isolated page (COOP/COEP headers), which a plain static server
does not send.

The page tokenizes in JavaScript with the char vocabulary of deepatlas.text.char (id = the
character's index in the vocabulary; an unknown character is an error, as in CharTokenizer), runs
greedy decoding with the KV cache as explicit tensors (deploy/onnx.py), classifies the test images
it shows, and leaves everything it computed in `window.deepatlas` for the test to compare with
PyTorch. Chromium is Debian's /usr/bin/chromium driven by Playwright; no browser is downloaded.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

from deepatlas.core.doctor import CHROMIUM  # Debian's /usr/bin/chromium (what `deepatlas doctor` checks)
from deepatlas.data.cache import cache_dir

ORT_WEB_VERSION = "1.30.0"
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


def _ort_cache() -> Path:
    return cache_dir(f"onnxruntime-web-{ORT_WEB_VERSION}")


def find_onnxruntime_web() -> Path | None:
    """The folder holding ORT_WEB_FILES ($DEEPATLAS_ORT_WEB, else the cache), or None."""
    for folder in (os.environ.get("DEEPATLAS_ORT_WEB"), _ort_cache() / "package" / "dist"):
        if folder and all((Path(folder) / f).is_file() for f in ORT_WEB_FILES):
            return Path(folder)
    return None


def fetch_onnxruntime_web() -> Path:
    """Unpack onnxruntime-web@ORT_WEB_VERSION from the npm registry into the cache (once)."""
    found = find_onnxruntime_web()
    if found is not None:
        return found
    if shutil.which("npm") is None:
        raise RuntimeError("npm not found: apt-get install -y npm, or set DEEPATLAS_ORT_WEB to a folder "
                           f"holding {', '.join(ORT_WEB_FILES)} (onnxruntime-web {ORT_WEB_VERSION}'s dist/)")
    cache = _ort_cache()
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["npm", "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--pack-destination", str(cache)],
                          capture_output=True, text=True, timeout=600)
    tgz = cache / f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    if proc.returncode != 0 or not tgz.is_file():
        raise RuntimeError(f"npm pack onnxruntime-web@{ORT_WEB_VERSION} failed: {proc.stderr.strip()[-500:]}")
    with tarfile.open(tgz) as tar:
        members = [m for m in tar.getmembers() if m.name in {f"package/dist/{f}" for f in ORT_WEB_FILES}]
        tar.extractall(cache, members=members, filter="data")
    tgz.unlink()
    found = find_onnxruntime_web()
    if found is None:
        raise RuntimeError(f"{tgz} did not hold {', '.join(ORT_WEB_FILES)}")
    return found


INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deepatlas: ONNX in the browser</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
 body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 52em; padding: 0 1em; color: #222 }
 .images { display: flex; flex-wrap: wrap; gap: .6em } figure { margin: 0; text-align: center; font-size: 12px }
 canvas { width: 84px; height: 84px; image-rendering: pixelated; border: 1px solid #ccc }
 .wrong { color: #b00 } pre { white-space: pre-wrap; background: #f6f6f6; padding: .8em; border-radius: 4px }
 #status { color: #666 }
</style></head>
<body>
<h1>deepatlas, running in this page</h1>
<p id="status">loading onnxruntime-web (WebAssembly)…</p>
<section id="classify" hidden><h2>Fashion-MNIST classifier</h2>
 <p id="accuracy"></p><div class="images" id="images"></div></section>
<section id="generate" hidden><h2>GPT trained on Jane Austen: greedy text</h2>
 <p><input id="prompt" size="40"> <button id="go">generate</button></p>
 <pre id="text"></pre><p id="speed"></p></section>
<script src="ort.wasm.min.js"></script>
<script src="app.js"></script>
</body></html>
"""

APP_JS = r"""// deepatlas S5: the exported models on onnxruntime-web's WASM backend, one thread.
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = "./";
window.deepatlas = { done: false };

const argmax = (a, start, n) => { let best = 0; for (let i = 1; i < n; i++) if (a[start + i] > a[start + best]) best = i; return best; };

async function classify(spec) {
  const sess = await ort.InferenceSession.create(spec.model);
  const data = await (await fetch(spec.images)).json();      // {shape, x, pixels, labels, classes}
  const out = await sess.run({ x: new ort.Tensor("float32", Float32Array.from(data.x), data.shape) });
  const C = data.classes.length, logits = Array.from(out.logits.data);
  const predictions = data.labels.map((_, i) => argmax(logits, i * C, C));
  const box = document.getElementById("images");
  data.pixels.forEach((px, i) => {                               // 28x28 uint8 -> a canvas
    const fig = document.createElement("figure"), cv = document.createElement("canvas");
    cv.width = cv.height = 28;
    const ctx = cv.getContext("2d"), img = ctx.createImageData(28, 28);
    px.forEach((v, j) => { img.data.set([v, v, v, 255], 4 * j); });
    ctx.putImageData(img, 0, 0);
    const cap = document.createElement("figcaption");
    cap.textContent = data.classes[predictions[i]];
    if (predictions[i] !== data.labels[i]) { cap.className = "wrong"; cap.textContent += " (" + data.classes[data.labels[i]] + ")"; }
    fig.append(cv, cap); box.append(fig);
  });
  const correct = predictions.filter((p, i) => p === data.labels[i]).length;
  document.getElementById("accuracy").textContent = `${correct} of ${predictions.length} test images right`;
  document.getElementById("classify").hidden = false;
  return { logits, predictions, correct };
}

function encode(vocab, text) {                                  // = deepatlas.text.char.CharTokenizer
  return Array.from(text).map((c, i) => {
    const id = vocab.indexOf(c);
    if (id < 0) throw new Error(`character ${JSON.stringify(c)} at position ${i} is not in the vocabulary`);
    return id;
  });
}

async function generate(spec, sess, prompt) {
  const ids = encode(spec.vocab, prompt), [L, H, hd, V] = [spec.n_layer, spec.n_head, spec.head_dim, spec.vocab.length];
  let pastK = new ort.Tensor("float32", new Float32Array(0), [L, 1, H, 0, hd]), pastV = pastK;
  let input = ids, tokens = [], lastLogits = [];
  const t0 = performance.now();
  for (let n = 0; n < spec.new_tokens; n++) {                     // prompt in one call, then 1 token a call
    const feeds = { ids: new ort.Tensor("int64", BigInt64Array.from(input.map(BigInt)), [1, input.length]), past_k: pastK, past_v: pastV };
    const out = await sess.run(feeds);
    const last = (input.length - 1) * V;
    lastLogits.push(Array.from(out.logits.data.slice(last, last + V)));
    tokens.push(argmax(out.logits.data, last, V));
    input = [tokens[tokens.length - 1]]; pastK = out.present_k; pastV = out.present_v;
  }
  const seconds = (performance.now() - t0) / 1000;
  const text = prompt + tokens.map(t => spec.vocab[t]).join("");
  document.getElementById("text").textContent = text;
  document.getElementById("speed").textContent = `${tokens.length} tokens in ${seconds.toFixed(2)} s: ${(tokens.length / seconds).toFixed(0)} tokens/s (WASM, 1 thread)`;
  return { prompt_ids: ids, tokens, text, logits: lastLogits, tokens_per_s: tokens.length / seconds };
}

(async () => {
  try {
    const manifest = await (await fetch("manifest.json")).json();
    const result = {};
    if (manifest.classifier) result.classifier = await classify(manifest.classifier);
    if (manifest.gpt) {
      const spec = manifest.gpt, sess = await ort.InferenceSession.create(spec.model);
      const promptBox = document.getElementById("prompt");
      promptBox.value = new URLSearchParams(location.search).get("prompt") || spec.prompt;
      document.getElementById("generate").hidden = false;
      result.generation = await generate(spec, sess, promptBox.value);
      document.getElementById("go").onclick = () => generate(spec, sess, promptBox.value).catch(e => { document.getElementById("text").textContent = String(e); });
    }
    document.getElementById("status").textContent = `onnxruntime-web ${ort.env.versions ? ort.env.versions.web : ""}, WebAssembly backend`;
    window.deepatlas = { ...result, done: true };
  } catch (e) {
    document.getElementById("status").textContent = "error: " + e;
    window.deepatlas = { done: true, error: String(e && e.stack || e) };
  }
})();
"""


def write_site(out_dir: str | Path, classifier: dict | None = None, gpt: dict | None = None,
               ort_dir: Path | None = None) -> Path:
    """A static site in out_dir. classifier = {"model": ONNX path, "x": (N, ...) floats, "pixels":
    (N, 784) uint8, "labels", "classes"}; gpt = {"model": ONNX path, "vocab": chars, "n_layer",
    "n_head", "head_dim", "prompt", "new_tokens"}. Raises when onnxruntime-web is not found."""
    ort_dir = ort_dir or find_onnxruntime_web()
    if ort_dir is None:
        raise FileNotFoundError(f"onnxruntime-web {ORT_WEB_VERSION} not found: run `python -c 'from "
                                "deepatlas.deploy.web import fetch_onnxruntime_web as f; f()'` once (npm), "
                                "or set DEEPATLAS_ORT_WEB")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for f in ORT_WEB_FILES:
        shutil.copyfile(ort_dir / f, out / f)
    (out / "index.html").write_text(INDEX_HTML)
    (out / "app.js").write_text(APP_JS)
    manifest: dict[str, Any] = {}
    if classifier is not None:
        shutil.copyfile(classifier["model"], out / "classifier.onnx")
        x = classifier["x"]
        (out / "images.json").write_text(json.dumps({
            "shape": list(x.shape), "x": [float(v) for v in x.reshape(-1)],
            "pixels": [[int(v) for v in row] for row in classifier["pixels"]],
            "labels": [int(v) for v in classifier["labels"]], "classes": list(classifier["classes"])}))
        manifest["classifier"] = {"model": "classifier.onnx", "images": "images.json"}
    if gpt is not None:
        shutil.copyfile(gpt["model"], out / "gpt.onnx")
        manifest["gpt"] = {"model": "gpt.onnx", **{k: gpt[k] for k in
                                                   ("vocab", "n_layer", "n_head", "head_dim", "prompt", "new_tokens")}}
        manifest["gpt"]["vocab"] = list(gpt["vocab"])
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args) -> None:   # quiet
        pass


class serve:
    """`with serve(folder) as url:` a static http server on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, folder: str | Path) -> None:
        handler = functools.partial(_Handler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_in_chromium(site: str | Path, screenshot: str | Path | None = None, query: str = "",
                    timeout_s: float = 120.0) -> dict:
    """Open the site's index.html in headless Chromium and return `window.deepatlas` (with the
    console errors seen). Raises when Playwright or Chromium is missing, or the page fails."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise ImportError("playwright not installed: pip install playwright "
                          "(never `playwright install`: it drives Debian's /usr/bin/chromium)") from e
    if not CHROMIUM.is_file():
        raise FileNotFoundError(f"{CHROMIUM} not installed: apt-get install -y chromium")
    errors: list[str] = []
    with serve(site) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "index.html" + query)
            page.wait_for_function("window.deepatlas && window.deepatlas.done", timeout=timeout_s * 1000)
            result = page.evaluate("window.deepatlas")
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    if result.get("error"):
        raise RuntimeError(f"the page failed: {result['error']}")
    result["console_errors"] = errors
    return result
