// The drawing page: strokes on a canvas, sent as a PNG to POST /predict after each change,
// the answer's top probabilities shown as bars. No library, nothing loaded from elsewhere.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const statusLine = document.getElementById("status");
const predictionEl = document.getElementById("prediction");
const probabilityEl = document.getElementById("probability");
const bars = document.getElementById("bars");

let topK = 10;            // classes shown; set from GET /model
let version = 0;          // bumped by every change to the drawing
let shown = 0;            // the version whose answer is on the page
let inFlight = false;
let drawing = false;
let inked = false;
let last = null;

function setStatus(state, text) {
  statusLine.dataset.state = state;
  statusLine.textContent = text;
}

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  version += 1;
  shown = version;
  predictionEl.textContent = "";
  probabilityEl.textContent = "";
  bars.replaceChildren();
  setStatus("empty", "draw a digit in the box");
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * (pad.width / box.width),
           y: (event.clientY - box.top) * (pad.height / box.height) };
}

function strokeTo(p) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 20;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(last.x, last.y);
  ctx.lineTo(p.x, p.y);
  ctx.stroke();
  last = p;
  inked = true;
  changed();
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  strokeTo(last);           // a dot where the stroke starts
});
pad.addEventListener("pointermove", (event) => {
  if (drawing) strokeTo(point(event));
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => { drawing = false; });
}
document.getElementById("clear").addEventListener("click", clearPad);

function changed() {
  version += 1;
  if (!inFlight) send();
}

async function send() {
  inFlight = true;
  const sent = version;
  setStatus("busy", "thinking\u2026");
  try {
    const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const form = new FormData();
    form.append("files", blob, "drawing.png");
    const response = await fetch(`/predict?top_k=${topK}`, { method: "POST", body: form });
    const answer = await response.json();
    if (sent >= shown && inked) {
      shown = sent;
      if (response.ok) show(answer.predictions[0]);
      else showProblem(answer.detail);
    }
  } catch (error) {
    setStatus("error", `no answer from the server (${error})`);
  } finally {
    inFlight = false;
  }
  if (version > sent && inked) send();
  else if (statusLine.dataset.state === "busy") setStatus("idle", "ready: keep drawing, or clear");
}

function show(prediction) {
  predictionEl.textContent = prediction["class"];
  probabilityEl.textContent = `probability ${(100 * prediction.probability).toFixed(1)}%`;
  bars.replaceChildren(...prediction.top_k.map((entry) => {
    const row = document.createElement("li");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = entry["class"];
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${(100 * entry.probability).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * entry.probability).toFixed(1)}%`;
    row.append(label, track, value);
    return row;
  }));
}

function showProblem(detail) {
  predictionEl.textContent = "?";
  probabilityEl.textContent = typeof detail === "string" ? detail.replace(/^files\[0\] '[^']*': /, "") : "";
  bars.replaceChildren();
}

async function describeModel() {
  const el = document.getElementById("model");
  try {
    const model = await (await fetch("/model")).json();
    topK = Math.min(10, model.classes.length);
    const sizes = model.model.sizes.join("-");
    el.textContent = `MLP ${sizes} (${model.model.activation}), ${model.classes.length} classes, ` +
      `${model.image_shape[0]}x${model.image_shape[1]} input`;
  } catch (error) {
    el.textContent = "the model could not be described";
  }
}

clearPad();
describeModel();
