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

The page tokenizes in JavaScript: with the char vocabulary of deepatlas.text.char (id = the
character's index in the vocabulary; an unknown character is an error, as in CharTokenizer), or
with a byte-level BPE (text/bpe.py, e.g. SmolLM2's from its GGUF) written out as tokenizer.json —
special tokens cut out whole, the pre-tokeniser's regexes (\\s spelled out, see js_pattern), UTF-8
bytes as GPT-2's printable characters, the lowest-ranked merge first. It runs greedy decoding
with the KV cache as explicit tensors (deploy/onnx.py), classifies the test images it shows, and
leaves everything it computed in `window.deepatlas` for the test to compare with PyTorch.
Chromium is Debian's /usr/bin/chromium driven by Playwright; no browser is downloaded.
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
from typing import TYPE_CHECKING, Any

from deepatlas.core.doctor import CHROMIUM  # Debian's /usr/bin/chromium (what `deepatlas doctor` checks)
from deepatlas.data.cache import cache_dir

if TYPE_CHECKING:
    from deepatlas.text.bpe import ByteLevelBPE

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


def require_onnxruntime_web() -> Path:
    """find_onnxruntime_web(), or an error that says how to get it."""
    found = find_onnxruntime_web()
    if found is None:
        raise FileNotFoundError(f"onnxruntime-web {ORT_WEB_VERSION} not found: run `python -c 'from "
                                "deepatlas.deploy.web import fetch_onnxruntime_web as f; f()'` once (npm), "
                                "or set DEEPATLAS_ORT_WEB")
    return found


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
<section id="generate" hidden><h2 id="gen-title">GPT trained on Jane Austen: greedy text</h2>
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

function charTokenizer(vocab) {                                 // = deepatlas.text.char.CharTokenizer
  return {
    encode: text => Array.from(text).map((c, i) => {
      const id = vocab.indexOf(c);
      if (id < 0) throw new Error(`character ${JSON.stringify(c)} at position ${i} is not in the vocabulary`);
      return id;
    }),
    decode: ids => ids.map(t => vocab[t]).join(""),
  };
}

function byteLevelBPE(t) {                                      // = deepatlas.text.bpe.ByteLevelBPE
  const vocab = new Map(t.tokens.map((s, i) => [s, i]));
  const ranks = new Map(t.merges.map((m, i) => [m, i]));        // "a b" -> rank; a repeated pair keeps its last
  const byteChar = [], charByte = new Map();                    // GPT-2's bytes_to_unicode
  for (let b = 0, shift = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const c = String.fromCodePoint(printable ? b : 256 + shift++);
    byteChar.push(c); charByte.set(c, b);
  }
  const specials = new Set(t.specials);
  const esc = s => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const specialRx = t.specials.length ? new RegExp("(" + [...t.specials].sort((a, b) => b.length - a.length).map(esc).join("|") + ")") : null;
  const regexes = t.patterns.map(p => new RegExp(p, "gu"));
  const utf8 = new TextEncoder(), cache = new Map();
  function words(text) {                                        // each regex splits every piece, gaps kept
    let pieces = [text];
    for (const rx of regexes) {
      const out = [];
      for (const piece of pieces) {
        let start = 0;
        for (const m of piece.matchAll(rx)) {
          if (m.index > start) out.push(piece.slice(start, m.index));
          if (m[0].length) out.push(m[0]);
          start = m.index + m[0].length;
        }
        if (start < piece.length) out.push(piece.slice(start));
      }
      pieces = out;
    }
    return pieces;
  }
  function bpe(word) {                                          // merge the lowest-ranked pair, all its occurrences
    let sym = Array.from(utf8.encode(word), b => byteChar[b]);
    while (sym.length > 1) {
      let best = Infinity, a = null, b = null;
      for (let i = 0; i + 1 < sym.length; i++) {
        const r = ranks.get(sym[i] + " " + sym[i + 1]);
        if (r !== undefined && r < best) { best = r; a = sym[i]; b = sym[i + 1]; }
      }
      if (a === null) break;
      const merged = [];
      for (let i = 0; i < sym.length; i++) {
        if (i + 1 < sym.length && sym[i] === a && sym[i + 1] === b) { merged.push(a + b); i++; } else merged.push(sym[i]);
      }
      sym = merged;
    }
    return sym.map(s => { const id = vocab.get(s); if (id === undefined) throw new Error(`token ${JSON.stringify(s)} is not in the vocab`); return id; });
  }
  function encode(text) {
    const ids = [], parts = specialRx ? text.split(specialRx) : [text];
    parts.forEach((part, i) => {
      if (!part) return;
      if (specialRx && i % 2 === 1) { ids.push(vocab.get(part)); return; }
      for (const w of words(part)) {
        if (!cache.has(w)) cache.set(w, bpe(w));
        ids.push(...cache.get(w));
      }
    });
    return ids;
  }
  function decode(ids) {                                        // bytes -> UTF-8, invalid bytes -> U+FFFD
    const dec = new TextDecoder("utf-8"), out = [];
    let run = [];
    const flush = () => { out.push(dec.decode(new Uint8Array(run))); run = []; };
    for (const id of ids) {
      const tok = t.tokens[id];
      if (tok === undefined) throw new Error(`id ${id} is not in the vocab (valid: 0..${t.tokens.length - 1})`);
      if (specials.has(tok)) { flush(); out.push(tok); continue; }
      for (const c of tok) { const b = charByte.get(c); if (b !== undefined) run.push(b); else run.push(...utf8.encode(c)); }
    }
    flush();
    return out.join("");
  }
  return { encode, decode };
}

function classRanges(source, upTo) {                            // code points < upTo matching /^source$/u as [a, b] ranges
  const rx = new RegExp("^" + source + "$", "u"), ranges = [];
  for (let c = 0; c < upTo; c++) {
    if (!rx.test(String.fromCodePoint(c))) continue;
    const last = ranges[ranges.length - 1];
    if (last && last[1] === c - 1) last[1] = c; else ranges.push([c, c]);
  }
  return ranges;
}

function base64(floats) {                                       // Float32Array -> base64 of its bytes
  const bytes = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function generate(spec, tok, sess, prompt) {
  const ids = tok.encode(prompt), [L, H, hd] = [spec.n_layer, spec.n_head, spec.head_dim];
  let pastK = new ort.Tensor("float32", new Float32Array(0), [L, 1, H, 0, hd]), pastV = pastK;
  let input = ids, tokens = [], lastLogits = [], t1 = 0;
  const t0 = performance.now();
  for (let n = 0; n < spec.new_tokens; n++) {                     // prompt in one call, then 1 token a call
    const feeds = { ids: new ort.Tensor("int64", BigInt64Array.from(input.map(BigInt)), [1, input.length]), past_k: pastK, past_v: pastV };
    const out = await sess.run(feeds);
    const V = out.logits.dims[2], last = out.logits.data.subarray((input.length - 1) * V, input.length * V);
    lastLogits.push(V <= 1024 ? Array.from(last) : base64(last));  // a big vocab travels as bytes
    tokens.push(argmax(last, 0, V));
    if (n === 0) t1 = performance.now();
    input = [tokens[tokens.length - 1]]; pastK = out.present_k; pastV = out.present_v;
  }
  const t2 = performance.now(), seconds = (t2 - t0) / 1000;
  const decodeRate = tokens.length > 1 ? (tokens.length - 1) / ((t2 - t1) / 1000) : 0;
  const text = prompt + tok.decode(tokens);
  document.getElementById("text").textContent = text;
  document.getElementById("speed").textContent = `${tokens.length} tokens in ${seconds.toFixed(2)} s: ${(tokens.length / seconds).toFixed(1)} tokens/s with the prompt, ${decodeRate.toFixed(1)} tokens/s after it (WASM, 1 thread)`;
  return { prompt_ids: ids, tokens, text, logits: lastLogits, tokens_per_s: tokens.length / seconds,
           decode_tokens_per_s: decodeRate, prompt_seconds: (t1 - t0) / 1000 };
}

async function tokenizerOf(spec) {
  if (spec.tokenizer === "char") return charTokenizer(spec.vocab);
  return byteLevelBPE(await (await fetch(spec.tokenizer)).json());   // {tokens, merges, specials, patterns}
}

(async () => {
  try {
    const manifest = await (await fetch("manifest.json")).json();
    const result = {};
    if (manifest.classifier) result.classifier = await classify(manifest.classifier);
    if (manifest.gpt) {
      const spec = manifest.gpt, tok = await tokenizerOf(spec), t0 = performance.now();
      const sess = await ort.InferenceSession.create(spec.model);
      result.load_seconds = (performance.now() - t0) / 1000;
      result.checks = (spec.check_texts || []).map(text => { const ids = tok.encode(text); return { ids, text: tok.decode(ids) }; });
      if (spec.class_check_up_to) result.classes = Object.fromEntries(Object.entries(spec.classes).map(
        ([name, src]) => [name, classRanges(src, spec.class_check_up_to)]));
      const promptBox = document.getElementById("prompt");
      promptBox.value = new URLSearchParams(location.search).get("prompt") || spec.prompt;
      document.getElementById("gen-title").textContent = spec.title;
      document.getElementById("generate").hidden = false;
      result.generation = await generate(spec, tok, sess, promptBox.value);
      document.getElementById("go").onclick = () => generate(spec, tok, sess, promptBox.value).catch(e => { document.getElementById("text").textContent = String(e); });
    }
    document.getElementById("status").textContent = `onnxruntime-web ${ort.env.versions ? ort.env.versions.web : ""}, WebAssembly backend`;
    window.deepatlas = { ...result, done: true };
  } catch (e) {
    document.getElementById("status").textContent = "error: " + e;
    window.deepatlas = { done: true, error: String(e && e.stack || e) };
  }
})();
"""


# Python's `regex` \s is Unicode White_Space; JavaScript's \s adds U+FEFF and lacks U+0085, so
# the page spells the class out (checked code point by code point: unicode_class_mismatch).
WHITESPACE = "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
CLASSES = {"L": (r"\p{L}", r"\p{L}"), "N": (r"\p{N}", r"\p{N}"), "s": (r"\s", f"[{WHITESPACE}]")}  # Python, JS


def js_pattern(pattern: str) -> str:
    """A pre-tokeniser regex (text/pretokenize.py) for JavaScript's RegExp with flag u: \\s and
    \\S become the explicit White_Space class; everything else (\\p{L}, (?!...)) is the same syntax."""
    out, in_class, i = [], False, 0
    while i < len(pattern):
        pair = pattern[i:i + 2]
        if pair == r"\s":
            out.append(WHITESPACE if in_class else f"[{WHITESPACE}]")
            i += 2
            continue
        if pair == r"\S":
            if in_class:
                raise ValueError(f"{pattern!r}: \\S inside [...] has no JavaScript spelling here")
            out.append(f"[^{WHITESPACE}]")
            i += 2
            continue
        if pattern[i] == "\\":
            out.append(pair)
            i += 2
            continue
        if pattern[i] in "[]":   # no nested classes in these patterns
            in_class = pattern[i] == "["
        out.append(pattern[i])
        i += 1
    return "".join(out)


def bpe_spec(bpe: "ByteLevelBPE") -> dict:
    """A deepatlas.text.bpe.ByteLevelBPE as the page's tokenizer.json: tokens by id, merges in
    rank order, special tokens, pre-tokeniser regexes in JavaScript syntax."""
    tokens = [bpe.id_to_token.get(i) for i in range(len(bpe.vocab))]
    if None in tokens:
        raise ValueError(f"the vocab's ids are not 0..{len(bpe.vocab) - 1}; the page indexes tokens by id")
    return {"tokens": tokens, "merges": [f"{a} {b}" for a, b in bpe.merges],
            "specials": list(bpe.special_tokens), "patterns": [js_pattern(p) for p in bpe.pre.patterns]}


def _ranges_to_set(ranges: list[list[int]]) -> set[int]:
    return {c for a, b in ranges for c in range(a, b + 1)}


def unicode_class_mismatch(page_classes: dict[str, list[list[int]]], up_to: int) -> dict[str, int]:
    """Code points < up_to where the page's \\p{L}, \\p{N}, \\s differ from the `regex` module's."""
    import regex

    text = "".join(map(chr, range(up_to)))
    return {name: len({m.start() for m in regex.finditer(py, text)} ^ _ranges_to_set(page_classes[name]))
            for name, (py, _) in CLASSES.items()}


def page_logits(generation: dict) -> list:
    """Each step's last-position logits the page kept (lists, or base64 float32 for a big vocab)."""
    import base64

    import numpy as np

    return [np.frombuffer(base64.b64decode(x), np.float32) if isinstance(x, str) else np.asarray(x, np.float32)
            for x in generation["logits"]]


def write_site(out_dir: str | Path, classifier: dict | None = None, gpt: dict | None = None,
               ort_dir: Path | None = None) -> Path:
    """A static site in out_dir. classifier = {"model": ONNX path, "x": (N, ...) floats, "pixels":
    (N, 784) uint8, "labels", "classes"}; gpt = {"model": ONNX path (deploy.onnx.export_decoder),
    "vocab": chars or "bpe": a ByteLevelBPE, "n_layer", "n_head" (cached heads), "head_dim",
    "prompt", "new_tokens"} and optionally "title", "check_texts" (strings the page encodes and
    decodes) and "class_check_up_to" (the page lists its regex classes' code points below it).
    Raises when onnxruntime-web is not found."""
    ort_dir = ort_dir or require_onnxruntime_web()
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
        spec = {"model": "gpt.onnx", "title": gpt.get("title", "GPT trained on Jane Austen: greedy text"),
                "check_texts": list(gpt.get("check_texts", ())),
                **{k: gpt[k] for k in ("n_layer", "n_head", "head_dim", "prompt", "new_tokens")}}
        if "bpe" in gpt:
            (out / "tokenizer.json").write_text(json.dumps(bpe_spec(gpt["bpe"]), ensure_ascii=False), "utf-8")
            spec["tokenizer"] = "tokenizer.json"
        else:
            spec.update(tokenizer="char", vocab=list(gpt["vocab"]))
        if gpt.get("class_check_up_to"):
            spec.update(class_check_up_to=int(gpt["class_check_up_to"]),
                        classes={name: js for name, (_, js) in CLASSES.items()})
        manifest["gpt"] = spec
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), "utf-8")
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
