// fusekit review: a grid of queued faces, driven by the keyboard. No dependencies, nothing from the internet.
"use strict";
(function () {
  const PAGE = 40;
  const token = document.body.dataset.token;
  const tab = Array.from(crypto.getRandomValues(new Uint8Array(6)), b => b.toString(16).padStart(2, "0")).join("");
  let classes = [], items = [], view = [], page = 0, sel = 0;
  const undo = [];  // {face_id, seq} of this tab's saved verdicts, newest last
  const $ = id => document.getElementById(id);

  async function call(path, body) {
    const init = body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
                                           headers: {"Content-Type": "application/json"}};
    init.headers = Object.assign({"X-Fusekit-Token": token}, init.headers || {});
    const r = await fetch(path, init);
    const data = await r.json().catch(() => ({saved: false, error: `HTTP ${r.status}`}));
    if (!r.ok && data.saved === undefined) data.saved = false;
    return data;
  }

  // Verdicts are sent one after another, in the order they were given: the server numbers them in that order, so
  // the later of two verdicts on one face is the one that counts.
  let chain = Promise.resolve();
  function send(path, body) {
    const answer = chain.then(() => call(path, body));
    chain = answer.catch(() => {});
    return answer;
  }

  function banner(text) { const b = $("banner"); b.textContent = text; b.hidden = !text; }

  function fill(select, values) {
    for (const v of values) { const o = document.createElement("option"); o.value = o.textContent = v; select.append(o); }
  }

  function applyFilters(keepFace) {
    const reason = $("f-reason").value, cls = $("f-class").value, src = $("f-source").value, st = $("f-status").value;
    view = items.filter(it => (!reason || it.reason === reason) && (!cls || it.label === cls) &&
      (!src || it.dataset === src) && (!st || (st === "done") === (it.state !== null)));
    let at = keepFace ? view.findIndex(it => it.face_id === keepFace) : -1;
    if (at < 0) at = Math.max(0, view.findIndex(it => it.state === null));  // resume: the first face not done
    page = Math.floor(at / PAGE); sel = at;
    render();
  }

  function stateText(it) {
    if (it.ui === "saving") return "saving…";
    if (it.ui === "error") return "NOT saved";
    if (!it.state) return "to do";
    const v = it.state.verdict;
    return "saved: " + (v === "relabel" ? "→ " + it.state.label : v === "accept" ? "accepted" : "rejected");
  }

  function tile(it, k) {
    const t = document.createElement("div");
    t.className = "tile"; t.dataset.faceId = it.face_id; t.dataset.index = k;
    const img = document.createElement("img");
    img.alt = it.face_id; img.src = `/face?id=${encodeURIComponent(it.face_id)}&token=${encodeURIComponent(token)}`;
    const label = document.createElement("div"); label.className = "label";
    const top = document.createElement("div"); top.className = "top";
    top.textContent = it.top_classes.map((c, i) => `${c} ${Math.round(100 * it.top_probs[i])}%`).join(" · ");
    const why = document.createElement("div"); why.className = "why";
    why.textContent = `${it.reason} · #${it.rank} · ${it.dataset}`;
    const st = document.createElement("div"); st.className = "state";
    t.append(img, label, top, why, st);
    t.addEventListener("click", () => { sel = k; highlight(); });
    paint(t, it);
    return t;
  }

  function paint(t, it) {
    t.dataset.state = it.ui || (it.state ? "saved" : "todo");
    t.dataset.verdict = it.state ? it.state.verdict : "";
    const shown = it.state && it.state.label ? it.state.label : it.label;
    t.querySelector(".label").textContent = shown === it.label ? it.label : `${it.label} → ${shown}`;
    t.querySelector(".state").textContent = stateText(it);
  }

  function render() {
    const grid = $("grid"); grid.replaceChildren();
    const start = page * PAGE;
    view.slice(start, start + PAGE).forEach((it, i) => grid.append(tile(it, start + i)));
    const pages = Math.max(1, Math.ceil(view.length / PAGE));
    $("page").textContent = `page ${page + 1} / ${pages}`;
    highlight(); progress();
  }

  function highlight() {
    for (const t of document.querySelectorAll(".tile")) t.classList.toggle("selected", Number(t.dataset.index) === sel);
    const t = document.querySelector(".tile.selected");
    if (t) t.scrollIntoView({block: "nearest"});
  }

  function progress() {
    const done = items.filter(it => it.state !== null).length;
    const p = $("progress");
    p.dataset.done = done; p.dataset.left = items.length - done;
    const vd = view.filter(it => it.state !== null).length;
    p.textContent = `done ${done} / left ${items.length - done}` +
      (view.length !== items.length ? ` (this view: done ${vd} / left ${view.length - vd})` : "");
  }

  function repaint(it) {
    const t = document.querySelector(`.tile[data-face-id="${CSS.escape(it.face_id)}"]`);
    if (t) paint(t, it);
    progress();
  }

  function move(to) {
    if (!view.length) return;
    sel = Math.min(view.length - 1, Math.max(0, to));
    const p = Math.floor(sel / PAGE);
    if (p !== page) { page = p; render(); } else highlight();
  }

  function columns() {
    const tiles = document.querySelectorAll(".tile");
    if (!tiles.length) return 1;
    const top = tiles[0].offsetTop;
    let n = 0;
    for (const t of tiles) { if (t.offsetTop !== top) break; n++; }
    return Math.max(1, n);
  }

  async function give(verdict, label) {
    const it = view[sel];
    if (!it) return;
    if (verdict === "relabel" && label === it.label) verdict = "accept";
    it.ui = "saving"; repaint(it);
    move(sel + 1);
    try {
      const r = await send("/api/verdict", {face_id: it.face_id, verdict, label, tab});
      if (r.saved) { it.state = r.state; it.ui = null; undo.push({face_id: it.face_id, seq: r.seq}); banner(""); }
      else { it.ui = "error"; banner(`not saved: ${r.error}`); }
    } catch (e) {
      it.ui = "error"; banner("the server did not answer: that verdict is NOT saved (restart `fusekit review`)");
    }
    repaint(it);
  }

  async function takeBack() {
    const last = undo.pop();
    if (!last) return;
    const it = items.find(x => x.face_id === last.face_id);
    it.ui = "saving"; repaint(it);
    try {
      const r = await send("/api/undo", {face_id: last.face_id, undoes: last.seq, tab});
      if (r.saved) { it.state = r.state; it.ui = null; banner(""); }
      else { it.ui = "error"; undo.push(last); banner(`undo not saved: ${r.error}`); }
    } catch (e) {
      it.ui = "error"; undo.push(last); banner("the server did not answer: the undo is NOT saved");
    }
    repaint(it);
    const at = view.indexOf(it);
    if (at >= 0) move(at);
  }

  function key(e) {
    if (e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key;
    if (k >= "1" && k <= String(classes.length)) give("relabel", classes[Number(k) - 1]);
    else if (k === "x") give("reject");
    else if (k === "a") give("accept");
    else if (k === "z") takeBack();
    else if (k === "ArrowRight") move(sel + 1);
    else if (k === "ArrowLeft") move(sel - 1);
    else if (k === "ArrowDown") move(sel + columns());
    else if (k === "ArrowUp") move(sel - columns());
    else if (k === "n") move((page + 1) * PAGE);
    else if (k === "p") move((page - 1) * PAGE);
    else return;
    e.preventDefault();
  }

  async function refresh() {  // another tab may have given verdicts: take the server's word for faces not in flight
    const data = await call("/api/queue");
    const now = new Map(data.items.map(it => [it.face_id, it.state]));
    for (const it of items) if (!it.ui) { it.state = now.get(it.face_id) || null; repaint(it); }
  }

  async function start() {
    const data = await call("/api/queue");
    classes = data.classes; items = data.items.map(it => Object.assign(it, {ui: null}));
    fill($("f-reason"), [...new Set(items.map(it => it.reason))]);
    fill($("f-class"), classes);
    fill($("f-source"), [...new Set(items.map(it => it.dataset))].sort());
    const buttons = $("class-buttons");
    classes.forEach((c, i) => {
      const b = document.createElement("button"); b.textContent = `${i + 1} ${c}`; b.dataset.class = c;
      b.addEventListener("click", () => give("relabel", c)); buttons.append(b);
    });
    $("b-accept").addEventListener("click", () => give("accept"));
    $("b-reject").addEventListener("click", () => give("reject"));
    $("b-undo").addEventListener("click", takeBack);
    $("b-next").addEventListener("click", () => move((page + 1) * PAGE));
    $("b-prev").addEventListener("click", () => move((page - 1) * PAGE));
    for (const id of ["f-reason", "f-class", "f-source", "f-status"])
      $(id).addEventListener("change", () => { applyFilters(); $("grid").focus(); });
    document.addEventListener("keydown", key);
    window.addEventListener("focus", () => refresh().catch(() => {}));
    applyFilters();
    document.body.dataset.ready = "1";
  }

  start().catch(e => banner(`cannot load the queue: ${e}`));
})();
