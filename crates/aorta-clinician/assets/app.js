// aorta central station: polls the dashboard's JSON API once a second and
// draws the ward and patient views. No framework, nothing fetched from
// elsewhere; every value from the API goes into the page as text.
"use strict";

const CSRF = document.querySelector('meta[name="aorta-csrf"]').content;
// Paper: 25 mm/s, 10 mm/mV. A CSS pixel is 1/96 inch, so 1 mm = 96/25.4 px
// (docs/dashboard.md, "ECG paper").
const PX_PER_MM = 96 / 25.4;
const MM_PER_S = 25;
const MM_PER_MV = 10;
const LEAD_MM = 30;

let ward = null;
let patient = null;
let selectedStrip = null; // {patient, n, eventUs}
let stripDrawn = null; // key of the strip on the canvas

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function time(us) {
  if (us === null || us === undefined) return "—";
  return new Date(us / 1000).toLocaleTimeString([], { hour12: false });
}
function num(x, d) {
  return x === null || x === undefined || !isFinite(x) ? "—" : Number(x).toFixed(d);
}
async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

async function ack(id) {
  const r = await fetch("/api/ack", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Aorta-CSRF": CSRF },
    body: JSON.stringify({ alarm: id }),
  });
  if (!r.ok) alert("not acknowledged: " + (await r.text()));
  await tick();
}

function alarmRow(a, withAck) {
  const row = el("div", "alarm p-" + a.priority + (a.acknowledged ? " acked" : " unacked") + (a.end_us ? " ended" : ""));
  row.dataset.alarmId = a.id;
  row.dataset.kind = a.kind;
  row.dataset.priority = a.priority;
  row.dataset.acknowledged = a.acknowledged ? "true" : "false";
  row.append(el("span", "label", a.label));
  row.append(el("span", "when", time(a.start_us) + (a.end_us ? "–" + time(a.end_us) : "")));
  row.append(el("span", "state", a.acknowledged ? "acknowledged" : a.end_us ? "ended" : "active"));
  if (withAck && !a.acknowledged) {
    const b = el("button", "ack", "Ack");
    b.dataset.alarmId = a.id;
    b.title = "Acknowledge (audited)";
    b.addEventListener("click", (ev) => { ev.stopPropagation(); ack(a.id); });
    row.append(b);
  }
  return row;
}

function hrText(t) {
  const d = el("div", "hr", t.hr === null ? "---" : Math.round(t.hr));
  d.append(el("small", null, "bpm"));
  return d;
}

function renderWard() {
  const main = document.getElementById("ward");
  main.replaceChildren();
  if (!ward || ward.tiles.length === 0) {
    main.append(el("div", "empty", "Waiting for results…"));
    return;
  }
  const traces = [], sparks = [];
  for (const t of ward.tiles) {
    const tile = el("div", "tile" + (t.top_priority ? " top-" + t.top_priority : ""));
    tile.dataset.patient = t.patient;
    tile.dataset.rhythm = t.rhythm;
    tile.append(el("div", "pid", t.patient));
    tile.append(el("div", "rhythm" + (t.rhythm === "SINUS" || t.rhythm === "—" ? "" : " abn"), t.rhythm));
    tile.append(hrText(t));
    const hrv = el("div", "hrv");
    if (t.hrv) {
      hrv.append("SDNN ", el("b", null, num(t.hrv.hrv.sdnn, 0)), " ms");
      hrv.append(el("br"), "RMSSD " + num(t.hrv.hrv.rmssd, 0) + " ms");
    } else {
      hrv.textContent = "HRV —";
    }
    tile.append(hrv);
    tile.append(el("div", "sig " + t.signal, t.signal_text));
    if (t.ecg) {
      const c = el("canvas", "trace"); tile.append(c);
      tile.append(el("div", "tracelabel", "ECG ch 0 · " + t.ecg.text + " · " + time(t.ecg.first_sample_us)));
      traces.push([c, t.ecg]);
    }
    if (t.hr_recent.length > 1) {
      const c = el("canvas", "spark"); tile.append(c);
      sparks.push([c, t.hr_recent]);
    }
    const al = el("div", "alarms");
    for (const a of t.alarms) al.append(alarmRow(a, true));
    tile.append(al);
    tile.addEventListener("click", () => { location.hash = "#/patient/" + encodeURIComponent(t.patient); });
    main.append(tile);
  }
  for (const [c, ecg] of traces) drawTrace(c, ecg);
  for (const [c, hr] of sparks) drawSpark(c, hr);
}

// A tile's ECG: green on black, as a monitor's waveform (not to paper scale).
function drawTrace(c, ecg) {
  const w = c.clientWidth || 260, h = c.clientHeight || 58;
  const g = setupCanvas(c, w, h);
  g.fillStyle = "#000"; g.fillRect(0, 0, w, h);
  const xs = ecg.samples_uv;
  if (xs.length < 2) return;
  const sorted = [...xs].sort((a, b) => a - b);
  const lo = sorted[Math.floor(xs.length * 0.01)], hi = sorted[Math.ceil(xs.length * 0.99) - 1];
  const span = Math.max(hi - lo, 500);
  const mid = (hi + lo) / 2;
  g.strokeStyle = "#00e676"; g.lineWidth = 1.4; g.lineJoin = "round";
  g.beginPath();
  xs.forEach((v, i) => {
    const x = i / (xs.length - 1) * w;
    const y = h / 2 - (v - mid) / span * (h - 8);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

function drawSpark(c, hr) {
  const w = c.clientWidth || 260, h = c.clientHeight || 22;
  const g = setupCanvas(c, w, h);
  const ys = hr.filter((v) => v !== null && isFinite(v));
  if (ys.length < 2) return;
  const lo = Math.min(...ys) - 5, hi = Math.max(...ys) + 5;
  g.strokeStyle = "#2e8b57"; g.lineWidth = 1.2; g.beginPath();
  let pen = false;
  hr.forEach((v, i) => {
    if (v === null || !isFinite(v)) { pen = false; return; }
    const x = i / (hr.length - 1) * w, y = h - 2 - (v - lo) / (hi - lo) * (h - 4);
    if (pen) g.lineTo(x, y); else g.moveTo(x, y);
    pen = true;
  });
  g.stroke();
  g.fillStyle = "#4a7"; g.font = "10px sans-serif"; g.fillText("HR trend", 2, 10);
}

function setupCanvas(c, cssW, cssH) {
  const dpr = window.devicePixelRatio || 1;
  c.style.width = cssW + "px";
  c.style.height = cssH + "px";
  c.width = Math.round(cssW * dpr);
  c.height = Math.round(cssH * dpr);
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  return g;
}

// A time series plot: series = [{name, color, points: [[t_us, y]]}].
function plot(c, series, yLabel) {
  const w = c.clientWidth || 500, h = 180;
  const g = setupCanvas(c, w, h);
  g.fillStyle = "#060a0e"; g.fillRect(0, 0, w, h);
  const pts = series.flatMap((s) => s.points).filter((p) => p[1] !== null && isFinite(p[1]));
  g.font = "11px sans-serif";
  if (pts.length === 0) { g.fillStyle = "#678"; g.fillText("no data yet", 10, 20); c.dataset.points = "0"; return; }
  let t0 = Math.min(...pts.map((p) => p[0])), t1 = Math.max(...pts.map((p) => p[0]));
  if (t1 === t0) t1 = t0 + 1;
  let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
  const pad = Math.max((y1 - y0) * 0.1, 5); y0 = Math.max(0, y0 - pad); y1 = y1 + pad;
  const L = 40, R = 8, T = 8, B = 18;
  const X = (t) => L + (t - t0) / (t1 - t0) * (w - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (h - T - B);
  g.strokeStyle = "#1c2a36"; g.fillStyle = "#789"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    g.beginPath(); g.moveTo(L, Y(y)); g.lineTo(w - R, Y(y)); g.stroke();
    g.fillText(y.toFixed(0), 4, Y(y) + 4);
  }
  g.fillText(time(t0), L, h - 4);
  const te = time(t1); g.fillText(te, w - R - g.measureText(te).width, h - 4);
  g.fillText(yLabel, L + 4, T + 10);
  let drawn = 0, lx = L + 60;
  for (const s of series) {
    g.strokeStyle = s.color; g.fillStyle = s.color; g.lineWidth = 1.6;
    g.beginPath();
    let pen = false;
    for (const [t, y] of s.points) {
      if (y === null || !isFinite(y)) { pen = false; continue; }
      if (pen) g.lineTo(X(t), Y(y)); else g.moveTo(X(t), Y(y));
      pen = true; drawn++;
      if (s.dots) g.fillRect(X(t) - 2, Y(y) - 2, 4, 4);
    }
    g.stroke();
    g.fillText(s.name, lx, T + 10); lx += g.measureText(s.name).width + 14;
  }
  c.dataset.points = String(drawn);
}

// An ECG strip on standard paper: 1 mm minor and 5 mm major grid, 25 mm/s,
// 10 mm/mV, a 1 mV calibration pulse at the left of each lead.
function drawStrip(c, s, eventUs) {
  const px = PX_PER_MM;
  const strip = s.strip;
  const n = Math.max(0, ...strip.leads.map((l) => l.samples_uv.length));
  const secs = n / strip.fs;
  const calMm = 10; // calibration pulse and label area
  const wMm = Math.ceil((calMm + secs * MM_PER_S) / 5) * 5 + 5;
  const hMm = LEAD_MM * Math.max(1, strip.leads.length) + 5;
  const W = wMm * px, H = hMm * px;
  const g = setupCanvas(c, W, H);
  g.fillStyle = "#fff7f5"; g.fillRect(0, 0, W, H);
  for (let mm = 0; mm <= wMm; mm++) {
    g.strokeStyle = mm % 5 === 0 ? "#e58c8c" : "#f7cfcf"; g.lineWidth = mm % 5 === 0 ? 0.9 : 0.5;
    g.beginPath(); g.moveTo(mm * px, 0); g.lineTo(mm * px, H); g.stroke();
  }
  for (let mm = 0; mm <= hMm; mm++) {
    g.strokeStyle = mm % 5 === 0 ? "#e58c8c" : "#f7cfcf"; g.lineWidth = mm % 5 === 0 ? 0.9 : 0.5;
    g.beginPath(); g.moveTo(0, mm * px); g.lineTo(W, mm * px); g.stroke();
  }
  const x0 = calMm * px;
  if (eventUs !== null && eventUs !== undefined) {
    const ex = x0 + (eventUs - strip.first_sample_us) / 1e6 * MM_PER_S * px;
    if (ex >= x0 && ex <= W) {
      g.strokeStyle = "rgba(0,90,255,.7)"; g.lineWidth = 1.5; g.setLineDash([4, 3]);
      g.beginPath(); g.moveTo(ex, 0); g.lineTo(ex, H); g.stroke(); g.setLineDash([]);
    }
  }
  let drawn = 0;
  g.font = "11px sans-serif";
  strip.leads.forEach((lead, i) => {
    const base = (i * LEAD_MM + LEAD_MM / 2 + 2.5) * px;
    g.strokeStyle = "#000"; g.lineWidth = 1.3; g.lineJoin = "round";
    // 1 mV calibration pulse: 10 mm high, 200 ms (5 mm) wide.
    g.beginPath();
    g.moveTo(1 * px, base); g.lineTo(2 * px, base); g.lineTo(2 * px, base - MM_PER_MV * px);
    g.lineTo(7 * px, base - MM_PER_MV * px); g.lineTo(7 * px, base); g.lineTo(9 * px, base);
    g.stroke();
    g.fillStyle = "#333"; g.fillText("ch " + lead.channel, 1 * px, base + 6 * px);
    g.beginPath();
    const top = i * LEAD_MM * px + 2.5 * px, bottom = top + LEAD_MM * px;
    lead.samples_uv.forEach((uv, k) => {
      const x = x0 + k / strip.fs * MM_PER_S * px;
      let y = base - uv / 1000 * MM_PER_MV * px;
      y = Math.min(bottom, Math.max(top, y));
      if (k === 0) g.moveTo(x, y); else g.lineTo(x, y);
      drawn++;
    });
    g.stroke();
  });
  c.dataset.samplesDrawn = String(drawn);
  c.dataset.leads = String(strip.leads.length);
  c.dataset.pxPerMm = px.toFixed(4);
  c.dataset.patient = s.patient;
  c.dataset.strip = String(s.n);
}

async function showStrip(box, pid, n, eventUs, text) {
  const key = pid + "/" + n;
  selectedStrip = { patient: pid, n, eventUs, text };
  if (stripDrawn === key && box.querySelector("canvas")) return;
  const s = await api("/api/strip?id=" + encodeURIComponent(pid) + "&n=" + n);
  box.replaceChildren(el("h2", null, "ECG strip — " + text + " at " + time(eventUs)));
  box.append(el("div", "meta", s.strip.leads.length + " lead(s) · " + s.strip.fs + " Hz · " +
    (Math.max(...s.strip.leads.map((l) => l.samples_uv.length)) / s.strip.fs).toFixed(1) +
    " s · 25 mm/s · 10 mm/mV · from " + time(s.strip.first_sample_us)));
  const c = el("canvas"); c.id = "strip";
  box.append(c);
  drawStrip(c, s, eventUs);
  stripDrawn = key;
}

function renderPatient(pid) {
  const sec = document.getElementById("patient");
  if (!patient) { sec.replaceChildren(el("div", "empty", "Loading " + pid + "…")); return; }
  const t = patient.tile;
  let head = sec.querySelector(".phead");
  if (!sec.dataset.built || sec.dataset.patient !== pid) {
    sec.replaceChildren();
    sec.dataset.built = "1"; sec.dataset.patient = pid;
    head = el("div", "phead"); sec.append(head);
    sec.append(el("div", "palarms"));
    const plots = el("div", "plots");
    for (const [id, title] of [["hr-trend", "Heart rate (bpm, 10-s windows)"], ["hrv-plot", "HRV per 5-min window (ms)"]]) {
      const p = el("div", "plot"); p.append(el("h2", null, title));
      const c = el("canvas"); c.id = id; p.append(c); plots.append(p);
    }
    sec.append(plots);
    const lower = el("div", "lower");
    const tl = el("div", "timeline"); tl.append(el("h2", null, "Events")); tl.append(el("ol"));
    const sb = el("div", "stripbox"); sb.append(el("h2", null, "Select an event to see its ECG strip"));
    lower.append(tl, sb); sec.append(lower);
    stripDrawn = null; selectedStrip = null;
  }
  head.replaceChildren();
  const back = el("button", "back", "← Ward");
  back.addEventListener("click", () => { location.hash = ""; });
  head.append(back, el("h1", null, t.patient), hrText(t));
  head.append(el("div", "rhythm" + (t.rhythm === "SINUS" || t.rhythm === "—" ? "" : " abn"), t.rhythm));
  head.append(el("div", "hrv", t.hrv ? "SDNN " + num(t.hrv.hrv.sdnn, 0) + " ms · RMSSD " + num(t.hrv.hrv.rmssd, 0) +
    " ms · LF/HF " + num(t.hrv.hrv.lf_hf, 2) : "HRV —"));
  head.append(el("div", "sig", t.signal_text));
  const pa = sec.querySelector(".palarms"); pa.replaceChildren();
  for (const a of patient.alarms.filter((a) => !a.acknowledged || !a.end_us).slice(0, 12)) pa.append(alarmRow(a, true));
  plot(document.getElementById("hr-trend"), [{ name: "HR", color: "#00e676", points: patient.hr_trend.map((p) => [p.t, p.bpm]) }], "bpm");
  plot(document.getElementById("hrv-plot"), [
    { name: "SDNN", color: "#ffd54f", dots: true, points: patient.hrv_windows.map((p) => [p.end, p.hrv.sdnn]) },
    { name: "RMSSD", color: "#4fc3f7", dots: true, points: patient.hrv_windows.map((p) => [p.end, p.hrv.rmssd]) },
  ], "ms");
  const ol = sec.querySelector(".timeline ol"); ol.replaceChildren();
  const box = sec.querySelector(".stripbox");
  let firstStrip = null;
  for (const [e, strip] of patient.events) {
    const li = el("li", strip !== null ? "has-strip" : "");
    const dot = el("span", "dot" + (e.priority ? " p-" + e.priority : ""));
    li.append(el("span", "t", time(e.time_us)), dot, el("span", null, e.text));
    li.dataset.timeUs = String(e.time_us);
    if (strip !== null) {
      li.dataset.strip = String(strip);
      li.append(el("span", "strip-link", "strip ▸"));
      li.addEventListener("click", () => { showStrip(box, t.patient, strip, e.time_us, e.text).then(() => renderPatient(pid)); });
      if (firstStrip === null) firstStrip = [strip, e.time_us, e.text];
      if (selectedStrip && selectedStrip.n === strip) li.classList.add("sel");
    }
    ol.append(li);
  }
  if (patient.events.length === 0) ol.append(el("li", null, "no events"));
  if (!selectedStrip && firstStrip) showStrip(box, t.patient, ...firstStrip).then(() => renderPatient(pid));
}

function route() {
  const m = location.hash.match(/^#\/patient\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

let ticking = false;
async function tick() {
  if (ticking) return;
  ticking = true;
  try {
    ward = await api("/api/state");
    const pid = route();
    document.getElementById("clock").textContent = new Date().toLocaleString([], { hour12: false });
    const nAl = ward.tiles.reduce((n, t) => n + t.alarms.filter((a) => !a.acknowledged).length, 0);
    document.getElementById("summary").textContent = ward.tiles.length + " patient(s) · " + nAl + " unacknowledged alarm(s) · " + ward.results + " results";
    const src = document.getElementById("source");
    const s = ward.source;
    src.className = s.error || s.refused || s.withheld || s.certificate_refusals.length ? "err" : "";
    src.textContent = s.error ? "server: " + s.error
      : (s.refused ? s.refused + " record(s) refused · " : "") + (s.withheld ? s.withheld + " withheld · " : "") +
        (s.last_poll_us ? "updated " + time(s.last_poll_us) : "connecting…");
    document.getElementById("ward").hidden = pid !== null;
    document.getElementById("patient").hidden = pid === null;
    if (pid === null) { renderWard(); patient = null; }
    else {
      try { patient = await api("/api/patient?id=" + encodeURIComponent(pid)); } catch (e) { patient = null; }
      renderPatient(pid);
    }
    document.body.dataset.version = String(ward.version);
  } catch (e) {
    document.getElementById("source").textContent = "dashboard unreachable: " + e.message;
    document.getElementById("source").className = "err";
  } finally {
    ticking = false;
  }
}

window.addEventListener("hashchange", () => {
  const sec = document.getElementById("patient");
  sec.dataset.built = ""; patient = null; tick();
});
tick();
setInterval(tick, 1000);
