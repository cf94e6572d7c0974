// report.html of a run folder (lab/viz/html.py embeds this file and the run's data).
// It draws what Python worked out (ladder, decrypted payloads, byte ranges, narration) and
// decodes nothing itself. Keys: → next, ← back, h decoded/hex, p presenter mode, Esc leaves it.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const state = { ladder: 0, pos: -1, hex: false, presenter: false, seq: [] };

  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "style") node.setAttribute("style", value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      node.appendChild(typeof kid === "string" || typeof kid === "number" ? document.createTextNode(String(kid)) : kid);
    }
    return node;
  }

  const seconds = (t) => (t >= 0 ? "+" : "") + t.toFixed(3) + " s";
  const stepMark = (s) => s.skipped ? el("span", { class: "skipped" }, "skipped")
    : s.ok ? el("span", { class: "ok" }, "ok") : el("span", { class: "bad" }, "FAILED");
  const stepByIndex = new Map(DATA.steps.map((s) => [s.index, s]));

  // ---------------------------------------------------------------- the page

  function header() {
    const steps = DATA.steps, checks = DATA.checks;
    const okSteps = steps.filter((s) => s.ok).length, okChecks = checks.filter((c) => c.ok).length;
    const when = DATA.started ? new Date(DATA.started * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";
    return el("header", {},
      el("h1", {}, DATA.scenario + (DATA.title ? ": " + DATA.title : "")),
      el("div", { class: "summary report-only" },
        el("span", { class: "verdict " + (DATA.passed ? "pass" : "fail") }, DATA.verdict),
        ` in ${DATA.duration} s${when ? " (" + when + ")" : ""}: ${okSteps}/${steps.length} steps as expected, ` +
        `${okChecks}/${checks.length} checks held.` +
        (DATA.topology ? ` Topology ${DATA.topology}` : "") + (DATA.gateways ? `; ${DATA.gateways}.` : "")),
      DATA.error ? el("pre", { class: "report-only" }, DATA.error) : null,
      el("p", { class: "help report-only noprint" }, "Click a message in the ladder to see its payloads and bytes. Keys: ",
        el("kbd", {}, "→"), " next message or step, ", el("kbd", {}, "←"), " back, ", el("kbd", {}, "h"),
        " decoded / hex, ", el("kbd", {}, "p"), " presenter mode (large type, for a projector), ",
        el("kbd", {}, "Esc"), " leaves it. ",
        el("button", { id: "present", onclick: () => setPresenter(true) }, "Presenter mode")),
      DATA.missing.length || DATA.problems.length || DATA.narration_problem.length
        ? el("p", { class: "problems report-only" },
          [...DATA.missing.map((m) => "Not in this run folder: " + m + ". "),
            ...DATA.problems.map((p) => p + " "), ...DATA.narration_problem]) : null);
  }

  function stepsSection() {
    const rows = DATA.steps.map((s) => el("tr", { id: "step-" + s.index, "data-step": s.index },
      el("td", { class: "n" }, s.index), el("td", {}, s.text), el("td", {}, s.expect), el("td", {}, stepMark(s)),
      el("td", {}, s.detail),
      el("td", { class: "story" }, s.narration.length ? el("ul", {}, s.narration.map((line) => el("li", {}, line))) : "")));
    return el("section", { id: "steps", class: "report-only" }, el("h2", {}, "Steps"),
      rows.length ? el("table", {}, el("thead", {}, el("tr", {}, ["#", "step", "expected", "result", "what it saw",
        "what happened, in words"].map((h) => el("th", {}, h)))), el("tbody", {}, rows))
        : el("p", {}, "This run has no steps (it stopped before them)."));
  }

  function checksSection() {
    if (!DATA.checks.length) return null;
    return el("section", { id: "checks", class: "report-only" }, el("h2", {}, "Checks"),
      el("table", {}, el("thead", {}, el("tr", {}, ["#", "check", "result", "what it saw", "tries"].map((h) => el("th", {}, h)))),
        el("tbody", {}, DATA.checks.map((c) => el("tr", {}, el("td", { class: "n" }, c.index), el("td", {}, c.text),
          el("td", {}, c.ok ? el("span", { class: "ok" }, "ok") : el("span", { class: "bad" }, "FAILED")),
          el("td", {}, c.saw), el("td", {}, `${c.tries} in ${c.seconds} s`))))));
  }

  function figuresSection() {
    if (!DATA.figures.length) return null;
    return el("section", { id: "figures", class: "report-only" }, el("h2", {}, "Figures"),
      DATA.figures.map((f) => el("figure", {}, el("img", { src: f.src, alt: f.caption }),
        el("figcaption", {}, f.caption + " (", el("a", { href: f.file }, f.file), ")"))));
  }

  function filesSection() {
    const links = (files) => files.map((f, i) => [i ? ", " : "", el("a", { href: f }, f.split("/").slice(1).join("/") || f)]);
    const items = [];
    for (const [what, files] of Object.entries(DATA.files)) {
      if (files.length) items.push(el("li", {}, what + ": ", links(files)));
    }
    items.push(el("li", {}, el("a", { href: "report.md" }, "report.md"), ", ", el("a", { href: "trace.jsonl" }, "trace.jsonl"),
      ", ", el("a", { href: "topology.json" }, "topology.json"), ", ", el("a", { href: "result.json" }, "result.json")));
    if (DATA.teardown.length) items.push(el("li", {}, "teardown: " + DATA.teardown.join("; ")));
    return el("section", { id: "files", class: "report-only" }, el("h2", {}, "Files of this run"), el("ul", {}, items),
      el("p", { class: "help" }, "The links work where this page sits beside the run folder's files (as ipsec-lab run " +
        "and ipsec-lab pack leave it)."));
  }

  // ---------------------------------------------------------------- the ladder

  function laneX(ladder) {
    const n = ladder.lanes.length;
    if (n <= 1) return [50];
    return ladder.lanes.map((_, i) => 10 + i * 80 / (n - 1));
  }

  function arrowRow(row, i, xs) {
    const a = xs[row.src], b = xs[row.dst], left = Math.min(a, b), width = Math.max(Math.abs(b - a), 1);
    const rightward = b >= a;
    const [p0, p1] = rightward ? [row.ports[0], row.ports[1]] : [row.ports[1], row.ports[0]];
    const kind = row.kind === "ike" ? (row.tcp ? "iketcp" : row.port4500 ? "ike4500" : "ike500") : row.kind;
    return el("div", { class: `row arrow ${row.kind} ${kind}` + (row.retransmission ? " retransmission" : ""),
      "data-i": i, "data-kind": row.kind, title: "click: its payloads and bytes" },
      el("div", { class: "t" }, seconds(row.time)),
      el("div", { class: "area" },
        el("div", { class: "span", style: `margin-left:${left}%;width:${width}%` },
          el("div", { class: "top" }, el("span", { class: "port" }, p0 || ""), el("span", { class: "label" }, row.label),
            el("span", { class: "port" }, p1 || "")),
          el("div", { class: "line " + (rightward ? "right" : "left") }),
          row.chain ? el("div", { class: "chain" }, row.chain) : null)),
      el("div", { class: "note" }, row.note));
  }

  function bandText(row) {
    if (row.protocol === "keepalive") return `NAT-keepalive ×${row.count}`;
    const seq = row.first_seq === row.last_seq ? `seq ${row.first_seq}` : `seq ${row.first_seq}-${row.last_seq}`;
    const carrier = row.encap ? " in UDP 4500" : row.tcp_port ? ` in TCP ${row.tcp_port}` : "";
    return `${row.protocol}${carrier} SPI ${row.spi}: ${row.count} ` +
      `${row.count === 1 ? "packet" : "packets"}, ${seq}` + (row.inner ? `  [${row.inner}]` : "");
  }

  function bandRow(row, i, xs) {
    const a = xs[row.src], b = xs[row.dst], left = Math.min(a, b), width = Math.max(Math.abs(b - a), 1);
    return el("div", { class: "row band " + row.protocol.toLowerCase(), "data-i": i, "data-kind": "band",
      title: "click: its packets" },
      el("div", { class: "t" }, seconds(row.time)),
      el("div", { class: "area" }, el("div", { class: "span", style: `margin-left:${left}%;width:${width}%` },
        el("div", { class: "box" }, (b >= a ? "→ " : "← ") + bandText(row)))),
      el("div", { class: "note" }, row.end > row.time ? `for ${(row.end - row.time).toFixed(2)} s` : ""));
  }

  function ladderView(ladder) {
    const xs = laneX(ladder);
    return el("div", { class: "ladder", id: "ladder" },
      el("div", { class: "lanes" }, ladder.lanes.map((lane, i) => el("div", { class: "lane" + (lane.nat ? " nat" : ""),
        style: `left:${xs[i]}%` }))),
      el("div", { class: "lanehead" }, el("div", { class: "t" }, "time"),
        el("div", { class: "area" }, ladder.lanes.map((lane, i) => el("div", { class: "name", style: `left:${xs[i]}%` },
          el("b", {}, lane.name), el("span", {}, lane.addresses.join(" / "))))),
        el("div", { class: "note" }, "")),
      ladder.rows.map((row, i) => row.type === "arrow" ? arrowRow(row, i, xs) : bandRow(row, i, xs)));
  }

  function ladderSection() {
    const sec = el("section", { id: "ladder-sec" }, el("h2", {}, "The ladder: every IKE message, ESP in bands"));
    if (!DATA.ladders.length) {
      sec.appendChild(el("p", {}, "No IKE, ESP or AH was captured in this run."));
      return sec;
    }
    const head = el("div", { class: "ladder-head" });
    if (DATA.ladders.length > 1) {
      DATA.ladders.forEach((l, i) => head.appendChild(el("button", { class: "ladder-choice" + (i === state.ladder ? " on" : ""),
        "data-ladder": i, onclick: () => chooseLadder(i) }, l.title)));
    }
    head.appendChild(el("span", { id: "ladder-title" }));
    sec.appendChild(head);
    for (const t of DATA.tap_losses || []) {
      sec.appendChild(el("p", { class: "help" }, `The tap ${t.tap} missed ${t.dropped} of the ${t.received} packets it saw ` +
        `(tcpdump: dropped by kernel, logs/tap-${t.tap}.txt): what is drawn from it lacks them.`));
    }
    sec.appendChild(el("div", { class: "ladder-wrap" }, el("div", { id: "ladder-holder" }),
      el("div", { class: "detail", id: "detail" }, el("p", { class: "empty" }, "Click a message or a band to see it here."))));
    return sec;
  }

  function chooseLadder(i) {
    state.ladder = i;
    const ladder = DATA.ladders[i];
    document.querySelectorAll(".ladder-choice").forEach((b) => b.classList.toggle("on", Number(b.dataset.ladder) === i));
    document.getElementById("ladder-title").textContent = ladder.title +
      (ladder.decrypted ? "" : " (no keys: the encrypted payloads stay closed)");
    const holder = document.getElementById("ladder-holder");
    holder.replaceChildren(ladderView(ladder));
    holder.querySelector(".ladder").addEventListener("click", (event) => {
      const row = event.target.closest(".row[data-i]");
      if (row) select(Number(row.dataset.i));
    });
    state.seq = sequence(ladder);
    state.pos = -1;
    document.getElementById("detail").replaceChildren(el("p", { class: "empty" }, "Click a message or a band to see it here."));
    show();
  }

  // what → and ← walk through: each step, then the messages and bands it saw
  function sequence(ladder) {
    const seq = [];
    const placed = new Set();
    for (const step of DATA.steps) {
      seq.push({ step: step.index, row: null });
      ladder.rows.forEach((row, i) => {
        if (row.step === step.index) { seq.push({ step: step.index, row: i }); placed.add(i); }
      });
    }
    ladder.rows.forEach((row, i) => { if (!placed.has(i)) seq.push({ step: row.step, row: i }); });
    return seq;
  }

  // ---------------------------------------------------------------- one message or band

  function bytesOf(b64) {
    const text = atob(b64);
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out;
  }

  function hexView(bytes) {
    const data = bytesOf(bytes.b64);
    const kindAt = new Array(data.length).fill("other");
    const labelAt = new Array(data.length).fill("");
    for (const [start, end, label, kind] of bytes.segments) {
      for (let i = start; i < Math.min(end, data.length); i++) { kindAt[i] = kind; labelAt[i] = label; }
    }
    const inside = (range, i) => range && i >= range[0] && i < range[1];
    const rows = [];
    for (let at = 0; at < data.length; at += 16) {
      const cells = [el("span", { class: "off" }, at.toString(16).padStart(4, "0"))];
      for (let i = at; i < Math.min(at + 16, data.length); i++) {
        const cls = "b k-" + kindAt[i] + (inside(bytes.encrypted, i) ? " enc" : "") + (inside(bytes.authenticated, i) ? " auth" : "");
        cells.push(el("span", { class: cls, title: `${i}: ${labelAt[i]}` }, data[i].toString(16).padStart(2, "0")));
        if (i % 16 === 7) cells.push(" ");
      }
      rows.push(el("div", { class: "hrow" }, cells));
    }
    const legend = el("div", { class: "legend" }, bytes.segments.map(([start, end, label, kind]) =>
      el("span", {}, el("span", { class: "sw k-" + kind }), `${start}-${end}: ${label}`)));
    const ranges = el("div", { class: "legend" },
      bytes.encrypted ? el("span", {}, el("span", { class: "encmark" }, "a1b2"), ` encrypted: octets ${bytes.encrypted[0]}-${bytes.encrypted[1]}`) : null,
      bytes.authenticated ? el("span", {}, el("span", { class: "authmark" }, "a1b2"), ` authenticated (ICV): octets ${bytes.authenticated[0]}-${bytes.authenticated[1]}`) : null,
      !bytes.encrypted && !bytes.authenticated ? el("span", {}, "No encrypted or authenticated range known for these octets.") : null);
    return [legend, ranges, el("div", { class: "hex" }, rows)];
  }

  function payloadList(payloads) {
    return el("ul", { class: "payloads" }, payloads.map((p) => el("li", {}, p.text,
      p.opened ? el("div", { class: "opened" }, p.opened) : null,
      p.inner && p.inner.length ? payloadList(p.inner) : null)));
  }

  function sidesTable(sides) {
    return el("table", { class: "sides" }, el("tbody", {}, sides.map((s) => el("tr", {},
      el("td", {}, s.side || s.capture), el("td", {}, `${s.capture} frame ${s.frame}`),
      el("td", { class: "mono" }, `${s.src} → ${s.dst}`), el("td", {}, `${s.length} octets`)))),
    sides.length > 1 && sides[0].rewrite ? el("caption", { style: "caption-side:bottom;text-align:left" },
      "The same packet on both sides of the NAT box; NAT: " + sides[0].rewrite) : null);
  }

  function viewButtons() {
    return el("div", { class: "views" }, el("button", { class: state.hex ? "" : "on", onclick: () => setHex(false) }, "decoded"),
      " ", el("button", { class: state.hex ? "on" : "", onclick: () => setHex(true) }, "hex"),
      el("span", { class: "help" }, "  (key h)"));
  }

  function arrowDetail(row) {
    const body = [el("h3", {}, row.label), el("div", { class: "head" }, row.header), viewButtons(), sidesTable(row.sides)];
    if (row.note && !(row.sides.length > 1 && row.sides[0].rewrite)) body.push(el("p", { class: "head" }, row.note));
    if (state.hex) {
      for (const side of row.sides) {
        if (row.sides.length > 1) body.push(el("h3", {}, `${side.side || side.capture}: frame ${side.frame}`));
        body.push(...hexView(side.bytes));
      }
    } else if (row.payloads.length) {
      body.push(el("div", { class: "chainlabel" }, "Payload chain:"), payloadList(row.payloads));
    } else {
      body.push(el("p", {}, row.chain || ""));
    }
    return body;
  }

  function bandDetail(row) {
    const body = [el("h3", {}, bandText(row)), viewButtons()];
    const withBytes = row.packets.filter((p) => p.bytes);
    if (state.hex) {
      for (const p of withBytes) {
        body.push(el("h3", {}, `${p.capture} frame ${p.frame}: ${p.src} → ${p.dst}`), ...hexView(p.bytes));
      }
      if (row.packets.length > withBytes.length) body.push(el("p", { class: "help" }, `The octets of the first ${withBytes.length} packets are here; the capture has them all.`));
    } else {
      body.push(el("table", { class: "packets" }, el("thead", {}, el("tr", {}, ["frame", "time", "from → to", "octets", "what"].map((h) => el("th", {}, h)))),
        el("tbody", {}, row.packets.map((p) => el("tr", {}, el("td", {}, p.frame), el("td", { class: "mono" }, seconds(p.time)),
          el("td", { class: "mono" }, `${p.src} → ${p.dst}`), el("td", {}, p.length), el("td", {}, p.what))))));
      if (row.more) body.push(el("p", {}, `… and ${row.more} more packets of this SA in ${row.capture}.`));
    }
    return body;
  }

  function stepDetail(step) {
    return [el("h3", {}, `Step ${step.index}: ${step.text}`), el("p", {}, "Expected to ", step.expect, "; ", stepMark(step), ". ", step.detail)];
  }

  // ---------------------------------------------------------------- moving

  function select(rowIndex) {
    const at = state.seq.findIndex((item) => item.row === rowIndex);
    state.pos = at;
    show();
  }

  function show() {
    const ladder = DATA.ladders[state.ladder];
    const item = state.pos >= 0 ? state.seq[state.pos] : null;
    const rows = document.querySelectorAll("#ladder .row");
    const shown = new Set(state.seq.slice(0, state.pos + 1).filter((x) => x.row !== null).map((x) => x.row));
    rows.forEach((node) => {
      const i = Number(node.dataset.i);
      node.classList.toggle("selected", item !== null && item.row === i);
      node.classList.toggle("future", state.presenter && state.pos >= 0 && !shown.has(i));
    });
    document.querySelectorAll("#steps tr.current").forEach((tr) => tr.classList.remove("current"));
    const detail = document.getElementById("detail");
    const step = item && item.step !== null && item.step !== undefined ? stepByIndex.get(item.step) : null;
    if (step) {
      const tr = document.getElementById("step-" + step.index);
      if (tr) tr.classList.add("current");
    }
    nowBox(step, item);
    if (!item || !detail) return;
    if (item.row === null) {
      detail.replaceChildren(...stepDetail(step), ...(state.presenter ? story(step, null) : []));
      detail.scrollTop = 0;
      return;
    }
    const row = ladder.rows[item.row];
    detail.replaceChildren(...(row.type === "arrow" ? arrowDetail(row) : bandDetail(row)),
      ...(state.presenter && step ? story(step, row) : []));
    detail.scrollTop = 0;
    const node = document.querySelector(`#ladder .row[data-i="${item.row}"]`);
    if (node) node.scrollIntoView({ block: "nearest" });
  }

  // the step's narration in presenter mode: under the message, the sentences that name its
  // exchange first (a message's own words), the rest of the step after them
  function story(step, row) {
    if (!step.narration.length) return [];
    const exchange = row && row.type === "arrow" ? (row.label.match(/^[A-Z_]+/) || [""])[0] : "";
    const words = exchange === "INFORMATIONAL" ? /INFORMATIONAL|Delete/ : exchange ? new RegExp(exchange) : null;
    const own = words ? step.narration.filter((line) => words.test(line)) : [];
    const rest = step.narration.filter((line) => !own.includes(line));
    return [el("div", { class: "story" }, el("h3", {}, `Step ${step.index} in words`),
      own.length ? el("ul", { class: "own" }, own.map((line) => el("li", {}, line))) : null,
      rest.length ? el("ul", { class: own.length ? "rest" : "" }, rest.map((line) => el("li", {}, line))) : null)];
  }

  function nowBox(step, item) {
    const now = document.getElementById("now");
    const pos = el("span", { class: "pos" }, `${state.pos + 1} / ${state.seq.length}  (→ next, ← back, h hex, Esc)`);
    if (!step) {
      now.replaceChildren(pos, el("div", { class: "steptitle" }, DATA.scenario + ": press → to begin"));
      return;
    }
    now.replaceChildren(pos, el("div", { class: "steptitle" }, `Step ${step.index}/${DATA.steps.length}: ${step.text} `, stepMark(step)));
  }

  function move(delta) {
    if (!state.seq.length) return;
    state.pos = Math.max(0, Math.min(state.seq.length - 1, state.pos + delta));
    show();
  }

  function setHex(on) { state.hex = on; show(); }

  function setPresenter(on) {
    state.presenter = on;
    document.body.classList.toggle("presenter", on);
    document.documentElement.classList.toggle("presenter", on);
    if (on && state.pos < 0) state.pos = 0;
    show();
  }

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const key = event.key;
    if (key === "ArrowRight" || key === "PageDown" || (key === " " && state.presenter)) move(1);
    else if (key === "ArrowLeft" || key === "PageUp") move(-1);
    else if (key === "h" || key === "H") setHex(!state.hex);
    else if (key === "p" || key === "P") setPresenter(!state.presenter);
    else if (key === "Escape" && state.presenter) setPresenter(false);
    else return;
    event.preventDefault();
  });

  const app = document.getElementById("app");
  app.append(header(), el("div", { id: "now" }), stepsSection(), checksSection() || "", ladderSection(),
    figuresSection() || "", filesSection());
  if (DATA.ladders.length) chooseLadder(0);
  else state.seq = DATA.steps.map((s) => ({ step: s.index, row: null }));
  if (location.hash === "#present") setPresenter(true);
})();
