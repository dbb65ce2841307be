// The live risk page: polls the /v1 API with the key pasted in the header (kept in this tab's
// sessionStorage only) and renders what it answers. No framework; every value from the API is
// put in the page as text (textContent), never as markup.
"use strict";

(() => {
  const POLL_MS = 2000;
  const SLOW_POLL_MS = 30000; // the audit chain is re-walked in full: not every 2 s
  const HISTORY_MS = 10 * 60 * 1000;
  const CHART_SERIES = 5;
  const KEY_ITEM = "preflight.key";

  const $ = (selector, root = document) => root.querySelector(selector);

  // --- the API ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }

    // What the user reads: 401/403 say the key was refused, 503 that the page retries.
    describe() {
      const code = this.problem.code ? ` ${this.problem.code}` : "";
      if (this.status === 401) return `key refused (401${code})`;
      if (this.status === 403) return `key refused for this (403${code}: ${this.message})`;
      if (this.status === 503) return "service unavailable, retrying";
      if (this.status === 0) return "server unreachable, retrying";
      const fields = (this.problem.errors || []).map((e) => `${e.field}: ${e.message}`);
      return `${this.status}${code}: ${[this.message, ...fields].join("; ")}`;
    }
  }

  async function api(method, path, body) {
    const headers = {
      Accept: "application/json",
      Authorization: `Bearer ${sessionStorage.getItem(KEY_ITEM) || ""}`,
    };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, { detail: String(error) });
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (error) {
      data = { detail: text.slice(0, 200) };
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // --- formatting -----------------------------------------------------------------------------

  // A decimal string grouped by thousands, every digit kept ("60000.5" → "60,000.5").
  function exact(value) {
    if (value === null || value === undefined) return "—";
    const text = String(value);
    const match = /^(-?)(\d+)(\.\d+)?$/.exec(text);
    if (!match) return text;
    return match[1] + match[2].replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (match[3] || "");
  }

  function money(value) {
    if (value === null || value === undefined) return "—";
    return Number(value).toLocaleString("en-US", {
      minimumFractionDigits: 2,
      maximumFractionDigits: 2,
    });
  }

  // A price with as many decimals as `like` has (at least 2): a TWAP beside its mark.
  function price(value, like) {
    if (value === null || value === undefined) return "—";
    const decimals = Math.max(2, (String(like).split(".")[1] || "").length);
    return Number(value).toLocaleString("en-US", {
      minimumFractionDigits: decimals,
      maximumFractionDigits: decimals,
    });
  }

  function percent(ratio, digits = 1) {
    if (ratio === null || ratio === undefined) return "—";
    return `${(Number(ratio) * 100).toFixed(digits)} %`;
  }

  function times(value) {
    return value === null || value === undefined ? "—" : `${Number(value).toFixed(2)}×`;
  }

  function clock(date) {
    return date.toLocaleTimeString("en-GB", { hour12: false });
  }

  function since(iso) {
    return iso ? clock(new Date(iso)) : "—";
  }

  // --- DOM helpers ------------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name === "style") Object.assign(node.style, value); // CSSOM: allowed by the CSP
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const td = (text, cls) => el("td", { class: cls, text });
  const badge = (text, cls = text) => el("span", { class: `badge ${cls}`, text });

  function fillTable(panel, rows) {
    const tbody = $("tbody", panel);
    tbody.replaceChildren(...rows);
    $(".empty", panel).hidden = rows.length > 0;
  }

  function panelError(panel, error) {
    const node = $(".panel-error", panel);
    node.hidden = !error;
    node.textContent = error ? error.describe() : "";
  }

  // --- state ------------------------------------------------------------------------------------

  const state = {
    generation: 0, // renewed by every new key: answers for an older key are dropped
    timer: null,
    slowTimer: null,
    levels: { warning: 0.8, liquidation: 1.0 },
    rows: [],
    samples: [], // {at: Date, ratios: Map(subaccount → ratio), book: ratio}
    chart: null,
  };

  function setStatus(text, cls) {
    const node = $("#status");
    node.textContent = text;
    node.className = `status ${cls}`;
  }

  // --- overview ---------------------------------------------------------------------------------

  function levelOf(ratio) {
    if (ratio === null || ratio === undefined) return "ok";
    if (ratio >= state.levels.liquidation) return "liquidation";
    if (ratio >= state.levels.warning) return "warning";
    return "ok";
  }

  function ratioBar(ratio) {
    // Full scale is 120 % of the liquidation level, so both levels show as ticks on the bar.
    const scale = state.levels.liquidation * 1.2;
    const width = ratio === null ? 0 : Math.min(Number(ratio) / scale, 1) * 100;
    const level = levelOf(ratio);
    return el(
      "div",
      { class: "bar", title: `warning ${percent(state.levels.warning)}, liquidation ${percent(state.levels.liquidation)}` },
      el("div", { class: `fill level-${level}`, style: { width: `${width.toFixed(2)}%` } }),
      el("div", { class: "tick", style: { left: `${((state.levels.warning / scale) * 100).toFixed(2)}%` } }),
      el("div", { class: "tick", style: { left: `${((state.levels.liquidation / scale) * 100).toFixed(2)}%` } }),
      el("span", { class: "label", text: ratio === null ? "no requirement" : percent(ratio) }),
    );
  }

  function renderOverview(rows) {
    const panel = $("#overview-panel");
    fillTable(
      panel,
      rows.map((row) => {
        const level = levelOf(row.maintenance_margin_ratio);
        return el(
          "tr",
          { "data-subaccount": row.subaccount_id, "data-level": level },
          td(row.subaccount_id),
          td(row.account_id),
          td(row.margin_mode),
          td(money(row.equity), "num"),
          td(money(row.maintenance_margin), "num"),
          el("td", {}, ratioBar(row.maintenance_margin_ratio)),
          td(money(row.free_collateral), "num"),
          td(percent(row.initial_margin_ratio), "num"),
          td(times(row.leverage), "num"),
        );
      }),
    );
    $("#levels").textContent =
      `(bars: warning at ${percent(state.levels.warning, 0)}, liquidation at ${percent(state.levels.liquidation, 0)})`;
  }

  function renderSubaccountChoices(rows) {
    const select = $("#whatif-form select[name=subaccount_id]");
    const ids = rows.map((row) => row.subaccount_id).sort();
    const current = [...select.options].map((option) => option.value);
    if (ids.join("\n") === current.join("\n")) return;
    const chosen = select.value;
    select.replaceChildren(...ids.map((id) => el("option", { value: id, text: id })));
    if (ids.includes(chosen)) select.value = chosen;
  }

  // --- chart --------------------------------------------------------------------------------------

  function record(rows, at) {
    let equity = 0;
    let maintenance = 0;
    const ratios = new Map();
    for (const row of rows) {
      ratios.set(row.subaccount_id, row.maintenance_margin_ratio);
      equity += Number(row.equity);
      maintenance += Number(row.maintenance_margin);
    }
    state.samples.push({ at, ratios, book: equity > 0 ? maintenance / equity : null });
    while (state.samples.length && at - state.samples[0].at > HISTORY_MS) state.samples.shift();
  }

  const PALETTE = ["#c62828", "#d98e04", "#3a5a8c", "#6a1b9a", "#00796b"];

  function renderChart(rows) {
    if (typeof Chart === "undefined") return;
    const top = rows
      .filter((row) => row.maintenance_margin_ratio !== null)
      .slice(0, CHART_SERIES)
      .map((row) => row.subaccount_id);
    const asPercent = (ratio) => (ratio === null || ratio === undefined ? null : ratio * 100);
    const level = (label, value, color) => ({
      label,
      data: state.samples.map(() => value * 100),
      borderColor: color,
      borderDash: [6, 4],
      borderWidth: 1,
      pointRadius: 0,
    });
    const datasets = [
      ...top.map((id, index) => ({
        label: id,
        data: state.samples.map((sample) => asPercent(sample.ratios.get(id))),
        borderColor: PALETTE[index % PALETTE.length],
        backgroundColor: PALETTE[index % PALETTE.length],
        borderWidth: 2,
        pointRadius: 0,
        spanGaps: true,
      })),
      {
        label: "book (rows shown)",
        data: state.samples.map((sample) => asPercent(sample.book)),
        borderColor: "#1d232a",
        borderWidth: 2,
        pointRadius: 0,
        spanGaps: true,
      },
      level("warning level", state.levels.warning, "#d98e04"),
      level("liquidation level", state.levels.liquidation, "#c62828"),
    ];
    const labels = state.samples.map((sample) => clock(sample.at));
    if (state.chart === null) {
      state.chart = new Chart($("#usage-chart"), {
        type: "line",
        data: { labels, datasets },
        options: {
          animation: false,
          maintainAspectRatio: false,
          interaction: { mode: "index", intersect: false },
          scales: {
            y: { beginAtZero: true, title: { display: true, text: "% of equity" } },
            x: { ticks: { maxTicksLimit: 10, maxRotation: 0 } },
          },
          plugins: { legend: { position: "right" } },
        },
      });
    } else {
      state.chart.data.labels = labels;
      state.chart.data.datasets = datasets;
      state.chart.update("none");
    }
  }

  // --- margin calls, marks, trading states, audit -----------------------------------------

  function renderCalls(calls) {
    const panel = $("#calls-panel");
    fillTable(
      panel,
      calls.map((call) => {
        const ack = el("button", { type: "button", class: "ack", text: "Ack" });
        ack.addEventListener("click", () => acknowledge(call.id, ack));
        return el(
          "tr",
          { "data-call-id": call.id, "data-subaccount": call.subaccount_id, "data-level": call.level },
          td(call.subaccount_id),
          el("td", {}, badge(call.level)),
          td(call.subject),
          td(percent(call.ratio), "num"),
          td(money(call.shortfall), "num"),
          td(since(call.raised_at)),
          el("td", {}, ack),
        );
      }),
    );
  }

  async function acknowledge(id, button) {
    button.disabled = true;
    const panel = $("#calls-panel");
    try {
      await api("POST", `/v1/margin-calls/${encodeURIComponent(id)}/ack`);
      panelError(panel, null);
      button.closest("tr").remove();
      $(".empty", panel).hidden = $("tbody", panel).children.length > 0;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      button.disabled = false;
      panelError(panel, error);
    }
  }

  function renderMarks(marks) {
    fillTable(
      $("#marks-panel"),
      marks.map((mark) => {
        const distance = Number(mark.twap) > 0 ? Number(mark.price) / Number(mark.twap) - 1 : null;
        return el(
          "tr",
          { "data-symbol": mark.symbol, "data-status": mark.status },
          td(mark.symbol),
          td(price(mark.price, mark.price), "num"),
          td(price(mark.twap, mark.price), "num"),
          td(distance === null ? "—" : `${distance >= 0 ? "+" : ""}${(distance * 100).toFixed(2)} %`, "num"),
          el("td", {}, badge(mark.status)),
          td(`${(mark.age_ms / 1000).toFixed(1)} s`, "num"),
        );
      }),
    );
  }

  function renderStates(states) {
    fillTable(
      $("#states-panel"),
      states.map((s) =>
        el(
          "tr",
          { "data-scope": s.scope, "data-id": s.id },
          td(s.scope),
          td(s.id ?? "—"),
          el("td", {}, badge(s.state)),
          el("td", {}, badge(s.source)),
          td(s.reason),
          td(since(s.updated_at)),
        ),
      ),
    );
  }

  async function verifyAudit() {
    const panel = $("#audit-panel");
    const generation = state.generation;
    try {
      const report = await api("GET", "/v1/audit/verify");
      if (generation !== state.generation) return;
      panelError(panel, null);
      const head = report.head_hash ? ` — head #${report.head_seq} ${report.head_hash.slice(0, 12)}…` : "";
      $("#audit").replaceChildren(
        badge(report.ok ? "ok" : "broken"),
        ` ${report.entries.toLocaleString("en-US")} entries${head}`,
        report.ok ? "" : ` — first bad entry: #${report.first_bad_seq}`,
        el("span", { class: "muted", text: ` (verified ${clock(new Date())})` }),
      );
      $("#audit").dataset.ok = String(report.ok);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (generation === state.generation) panelError(panel, error);
    }
  }

  async function loadInstruments() {
    const select = $("#whatif-form select[name=instrument]");
    try {
      const { instruments } = await api("GET", "/v1/instruments");
      const chosen = select.value;
      const symbols = instruments.map((i) => i.symbol).sort();
      select.replaceChildren(...symbols.map((s) => el("option", { value: s, text: s })));
      if (symbols.includes(chosen)) select.value = chosen;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error; // the overview's status says why
    }
  }

  // --- the poll ---------------------------------------------------------------------------------

  async function refresh() {
    const generation = state.generation;
    const [overview, parameters, calls, marks, states] = await Promise.allSettled([
      api("GET", "/v1/risk/overview?limit=100"),
      api("GET", "/v1/risk/parameters"),
      api("GET", "/v1/margin-calls?status=open"),
      api("GET", "/v1/marks"),
      api("GET", "/v1/trading-state"),
    ]);
    if (generation !== state.generation) return false;
    for (const result of [overview, parameters, calls, marks, states]) {
      if (result.status === "rejected" && !(result.reason instanceof ApiError)) throw result.reason;
    }
    if (parameters.status === "fulfilled") {
      state.levels = {
        warning: Number(parameters.value.margin_call_warning ?? state.levels.warning),
        liquidation: Number(parameters.value.margin_call_liquidation ?? state.levels.liquidation),
      };
    }
    const panels = [
      [overview, "#overview-panel", (body) => {
        state.rows = body.subaccounts;
        record(state.rows, new Date());
        renderOverview(state.rows);
        renderChart(state.rows);
        renderSubaccountChoices(state.rows);
      }],
      [calls, "#calls-panel", (body) => renderCalls(body.margin_calls)],
      [marks, "#marks-panel", (body) => renderMarks(body.marks)],
      [states, "#states-panel", (body) => renderStates(body.trading_states)],
    ];
    for (const [result, selector, render] of panels) {
      if (result.status === "fulfilled") {
        panelError($(selector), null);
        render(result.value);
      } else {
        panelError($(selector), result.reason);
      }
    }
    if (overview.status === "rejected") {
      const error = overview.reason;
      const refused = error.status === 401 || error.status === 403;
      setStatus(refused ? `key refused (${error.status})` : error.describe(), refused ? "refused" : "unavailable");
      return !refused; // a refused key stays refused: wait for another
    }
    setStatus("live", "live");
    const now = new Date();
    const node = $("#refreshed");
    node.textContent = `last refreshed ${clock(now)}`;
    node.dataset.at = now.toISOString();
    return true;
  }

  function schedule() {
    const generation = state.generation;
    const loop = async () => {
      let again = true;
      try {
        again = await refresh();
      } catch (error) {
        setStatus(`page error: ${error}`, "refused");
      }
      if (generation === state.generation && again) state.timer = setTimeout(loop, POLL_MS);
    };
    loop();
    const slow = () => {
      verifyAudit();
      loadInstruments();
      if (generation === state.generation) state.slowTimer = setTimeout(slow, SLOW_POLL_MS);
    };
    slow();
  }

  function stop() {
    state.generation += 1;
    clearTimeout(state.timer);
    clearTimeout(state.slowTimer);
    state.samples = [];
    if (state.chart !== null) {
      state.chart.destroy();
      state.chart = null;
    }
  }

  function useKey(key) {
    stop();
    if (!key) {
      sessionStorage.removeItem(KEY_ITEM);
      setStatus("no key", "idle");
      return;
    }
    sessionStorage.setItem(KEY_ITEM, key);
    setStatus("connecting…", "idle");
    schedule();
  }

  // --- what if ----------------------------------------------------------------------------------

  const SUMMARY_FIELDS = [
    ["equity", exact],
    ["collateral_value", exact],
    ["initial_margin", exact],
    ["maintenance_margin", exact],
    ["free_collateral", exact],
    ["initial_margin_ratio", (v) => percent(v, 2)],
    ["maintenance_margin_ratio", (v) => percent(v, 2)],
    ["leverage", times],
    ["gross_notional", exact],
  ];

  function beforeAfter(before, after) {
    return el(
      "table",
      { class: "before-after" },
      el("thead", {}, el("tr", {}, el("th", { text: "" }), el("th", { class: "num", text: "before" }), el("th", { text: "" }), el("th", { class: "num", text: "after" }))),
      el(
        "tbody",
        {},
        ...SUMMARY_FIELDS.map(([field, format]) =>
          el(
            "tr",
            { "data-field": field },
            td(field.replaceAll("_", " ")),
            el("td", { class: "num", "data-value": before ? before[field] : null, text: before ? format(before[field]) : "—" }),
            td("→"),
            el("td", { class: "num", "data-value": after[field], text: format(after[field]) }),
          ),
        ),
      ),
    );
  }

  function executionsTable(executions) {
    const heads = ["order", "filled", "avg price", "unfilled", "slippage", "fee", "book", "price from"];
    return el(
      "table",
      { class: "executions" },
      el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { text: h })))),
      el(
        "tbody",
        {},
        ...executions.map((x) =>
          el(
            "tr",
            {},
            td(x.order_index),
            td(exact(x.filled_size), "num"),
            td(exact(x.avg_price), "num"),
            td(exact(x.unfilled_size), "num"),
            td(x.slippage_bps === null ? "—" : `${x.slippage_bps.toFixed(1)} bps`, "num"),
            td(exact(x.fee), "num"),
            td(x.book),
            td(x.price_source),
          ),
        ),
      ),
    );
  }

  function reasonsList(reasons) {
    if (!reasons.length) return el("p", { class: "muted", text: "no reasons: every rule passes" });
    return el(
      "ul",
      { class: "reasons" },
      ...reasons.map((reason) => {
        const numbers = ["value", "limit", "shortfall"]
          .filter((name) => reason[name] !== null && reason[name] !== undefined)
          .map((name) =>
            el("span", { class: "numbers", "data-field": name, "data-value": reason[name] }, ` ${name} `, el("b", { text: exact(reason[name]) })),
          );
        return el(
          "li",
          { "data-code": reason.code },
          el("code", { text: reason.code }),
          reason.order_index === null ? "" : ` (order ${reason.order_index})`,
          `: ${reason.message}`,
          numbers.length ? " —" : "",
          ...numbers,
        );
      }),
    );
  }

  function renderCheck(result) {
    $("#whatif-result").replaceChildren(
      el(
        "p",
        { class: "decision", "data-decision": result.decision },
        badge(result.decision),
        ` check ${result.check_id} (${result.margin_mode}, ${since(result.as_of)})`,
      ),
      el("h3", { text: "Before → after" }),
      beforeAfter(result.before, result.after),
      el("h3", { text: "Executions" }),
      executionsTable(result.executions),
      el("h3", { text: "Reasons" }),
      reasonsList(result.reasons),
    );
  }

  function renderMaxSize(result) {
    const before = state.rows.find((row) => row.subaccount_id === result.subaccount_id) || null;
    $("#whatif-result").replaceChildren(
      el(
        "p",
        { class: "decision", "data-max-size": result.size },
        `largest ${result.side} of ${result.instrument} that passes now: `,
        el("b", { text: exact(result.size) }),
        result.binding ? ` — one lot more breaks ` : " — nothing binds",
        result.binding ? el("code", { text: result.binding }) : "",
      ),
      el("h3", { text: "Before → after (at the largest size)" }),
      beforeAfter(before, result.after),
      el("h3", { text: "Reasons one lot more would get" }),
      reasonsList(result.reasons),
    );
  }

  async function whatIf(event) {
    event.preventDefault();
    const form = event.target;
    const action = event.submitter ? event.submitter.value : "check";
    const data = new FormData(form);
    const type = data.get("type");
    const order = {
      instrument: data.get("instrument"),
      side: data.get("side"),
      type,
      ...(type === "limit" ? { limit_price: data.get("limit_price") } : {}),
    };
    const panel = $("#whatif-panel");
    const subaccount_id = data.get("subaccount_id");
    try {
      if (action === "max-size") {
        renderMaxSize(await api("POST", "/v1/pretrade/max-size", { subaccount_id, ...order }));
      } else {
        const orders = [{ ...order, size: data.get("size") }];
        renderCheck(await api("POST", "/v1/pretrade/check", { subaccount_id, orders }));
      }
      panelError(panel, null);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      panelError(panel, error);
      $("#whatif-result").replaceChildren();
    }
  }

  // --- wiring -----------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("#key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("#key").value.trim();
      $("#key").value = "";
      useKey(key);
    });
    $("#forget").addEventListener("click", () => useKey(""));
    $("#verify-now").addEventListener("click", verifyAudit);
    $("#whatif-form").addEventListener("submit", whatIf);
    const typeSelect = $("#whatif-form select[name=type]");
    typeSelect.addEventListener("change", () => {
      $("#whatif-form input[name=limit_price]").disabled = typeSelect.value !== "limit";
    });
    useKey(sessionStorage.getItem(KEY_ITEM) || "");
  });
})();
