"""The playground at `/`: one self-contained page (inline style and script, no network resources).

It talks to the same API as any client: `GET /v1/models` for what is loaded, then
`POST /v1/images/generations` (JSON) or, with reference images, `POST /v1/images/edits`
(multipart). The API key, if the server has one, is typed into the page and kept in
memory only. Every text from the server is set as text, never as HTML.
"""

from __future__ import annotations

from ..version import __version__

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>flux2-int8 playground</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px; color: #1d1d1f; background: #fafafa; max-width: 60em; }
h1 { font-size: 22px; margin: 0 0 8px; }
label { display: block; margin: 8px 0 2px; font-size: 14px; color: #333; }
input[type=text], input[type=number], input[type=password], select { padding: 4px 6px; font-size: 14px; }
#prompt { width: 100%; box-sizing: border-box; }
.row { display: flex; gap: 16px; flex-wrap: wrap; }
button { margin-top: 12px; padding: 6px 16px; font-size: 15px; }
#model { font-size: 13px; color: #555; background: #f0f0f3; padding: 6px 10px; border-radius: 3px; }
#error { color: #a00; white-space: pre-wrap; margin-top: 10px; }
#result img { width: 256px; height: auto; image-rendering: pixelated; border: 1px solid #ccc; margin: 10px 10px 0 0; }
#result figcaption { font-size: 12px; color: #555; }
figure { display: inline-block; margin: 0; }
</style>
</head>
<body>
<h1>flux2-int8 playground</h1>
<p id="model">loading model info&hellip;</p>
<label for="prompt">Prompt</label>
<input id="prompt" type="text" value="two red circles on a blue background">
<div class="row">
  <div><label for="size">Size</label><select id="size"><option value="auto">auto (native)</option><option>128x128</option><option>256x256</option><option>512x512</option><option>1024x1024</option></select></div>
  <div><label for="seed">Seed (empty: random)</label><input id="seed" type="number" min="0"></div>
  <div><label for="steps">Steps (empty: default)</label><input id="steps" type="number" min="1"></div>
  <div><label for="n">Images</label><input id="n" type="number" min="1" value="1"></div>
  <div><label for="lora">LoRA</label><select id="lora"><option value="">none</option></select></div>
</div>
<label for="references">Reference images (an edit; several: a composition)</label>
<input id="references" type="file" accept="image/png,image/jpeg,image/webp" multiple>
<label for="key">API key (if the server has one; kept in this page only)</label>
<input id="key" type="password" autocomplete="off">
<div><button id="go">Generate</button> <span id="status"></span></div>
<div id="error" role="alert"></div>
<div id="result"></div>
<footer style="margin-top:16px;color:#666;font-size:13px">flux2-int8 __VERSION__</footer>
<script>
const $ = (id) => document.getElementById(id);
function headers() {
  const key = $("key").value.trim();
  return key ? {"Authorization": "Bearer " + key} : {};
}
async function loadModel() {
  try {
    const response = await fetch("/v1/models", {headers: headers()});
    const body = await response.json();
    if (!response.ok) { $("model").textContent = "model info: " + body.error.message; return; }
    const m = body.data[0];
    const acts = m.activations ? " (" + m.activations.join(", ") + " activations)" : "";
    $("model").textContent = m.id + ": transformer " + m.transformer + acts + ", text encoder " + m.text_encoder +
      ", " + m.default_steps + " steps by default" + (m.default_size ? ", native " + m.default_size : "") +
      ", LoRAs: " + (m.loras.length ? m.loras.join(", ") : "none") + ", on " + m.device;
    const lora = $("lora");
    while (lora.options.length > 1) lora.remove(1);
    for (const name of m.loras) { const o = document.createElement("option"); o.value = name; o.textContent = name; lora.appendChild(o); }
  } catch (e) { $("model").textContent = "model info unavailable: " + e; }
}
function fields() {
  const f = {prompt: $("prompt").value, n: Number($("n").value || 1), size: $("size").value};
  if ($("seed").value !== "") f.seed = Number($("seed").value);
  if ($("steps").value !== "") f.num_inference_steps = Number($("steps").value);
  if ($("lora").value) f.lora = [$("lora").value];
  return f;
}
async function generate() {
  $("error").textContent = ""; $("status").textContent = "working\\u2026"; $("go").disabled = true;
  const started = performance.now();
  try {
    const f = fields(); const files = $("references").files;
    let response;
    if (files.length) {
      const form = new FormData();
      for (const [k, v] of Object.entries(f)) form.append(k, k === "lora" ? v.join(",") : String(v));
      for (const file of files) form.append("image[]", file, file.name);
      response = await fetch("/v1/images/edits", {method: "POST", headers: headers(), body: form});
    } else {
      response = await fetch("/v1/images/generations", {method: "POST", headers: {...headers(), "Content-Type": "application/json"}, body: JSON.stringify(f)});
    }
    let body;
    try { body = await response.json(); } catch (e) { body = {error: {message: "HTTP " + response.status}}; }
    if (!response.ok) { $("error").textContent = "Error " + response.status + ": " + body.error.message; return; }
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    $("result").replaceChildren();
    for (const item of body.data) {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = "data:image/" + body.output_format + ";base64," + item.b64_json;
      img.alt = item.revised_prompt;
      const cap = document.createElement("figcaption");
      cap.textContent = "seed " + item.seed + ", " + body.size + ", " + body.num_inference_steps + " steps, " + seconds + " s (pipeline " + body.timings.pipeline_seconds.toFixed(2) + " s, batch of " + body.timings.batch_size + ")";
      fig.append(img, cap); $("result").appendChild(fig);
    }
  } catch (e) {
    $("error").textContent = "Error: " + e;
  } finally { $("status").textContent = ""; $("go").disabled = false; }
}
$("go").addEventListener("click", generate);
$("key").addEventListener("change", loadModel);
loadModel();
</script>
</body>
</html>
"""


def render_page() -> str:
    """The playground's HTML."""
    return _PAGE.replace("__VERSION__", __version__)
