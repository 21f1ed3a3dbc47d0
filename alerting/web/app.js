/* wardwatch nurse page: login, worklist with live updates, patient view with charts.
 *
 * Plain browser JavaScript, no build step. Talks only to the API of the server that
 * serves it (/api/v1, cookie session; every request carries X-Wardwatch-CSRF: 1).
 * Everything shown is built with textContent, never innerHTML, so no data is markup.
 * Routes: #/ (worklist), #/patients/{id}, #/alerts/{id} (deep link from notifications).
 */
(function () {
  "use strict";

  var API = "/api/v1";
  var SEVERITY_RANK = { urgent: 0, warning: 1, info: 2 };
  var RANGES = [
    { id: "24h", label: "24 h", seconds: 86400 },
    { id: "7d", label: "7 d", seconds: 7 * 86400 },
    { id: "30d", label: "30 d", seconds: 30 * 86400 },
    { id: "90d", label: "90 d", seconds: 90 * 86400 },
  ];
  // Charts of the patient view: which observation kinds, which series, which unit.
  var CHARTS = [
    {
      id: "blood_pressure", title: "Blood pressure", unit: "mmHg",
      sources: [{ kind: "blood_pressure", components: [
        { name: "systolic", label: "Systolic", color: "#a50e0e" },
        { name: "diastolic", label: "Diastolic", color: "#0b57a4" },
      ] }],
      limitKinds: ["blood_pressure", "systolic", "diastolic"],
    },
    {
      id: "body_weight", title: "Weight", unit: "kg",
      sources: [{ kind: "body_weight", label: "Weight", color: "#3d4f63" }],
      limitKinds: ["body_weight"],
    },
    {
      id: "glucose", title: "Glucose", unit: "mg/dL",
      sources: [
        { kind: "glucose", label: "Meter", color: "#6a1b9a" },
        { kind: "cgm_glucose", label: "CGM", color: "#00695c" },
      ],
      limitKinds: ["glucose", "cgm_glucose"],
    },
    {
      id: "spo2", title: "SpO₂", unit: "%",
      sources: [{ kind: "spo2", label: "SpO₂", color: "#0b57a4" }],
      limitKinds: ["spo2"],
    },
    {
      id: "heart_rate", title: "Heart rate", unit: "/min",
      sources: [{ kind: "heart_rate", label: "Heart rate", color: "#a50e0e" }],
      limitKinds: ["heart_rate"],
    },
  ];
  var LIMIT_COLORS = { urgent: "#a50e0e", warning: "#8a4b00", info: "#3d4f63" };

  var state = {
    me: null,
    events: null,          // EventSource
    known: new Set(),      // alert ids seen since login (new ones may sound the cue)
    alerts: new Map(),     // worklist: id -> alert JSON
    filters: { status: "active", severity: "", patient: "", hideSnoozed: false },
    patients: [],
    range: "7d",
    charts: [],            // uPlot instances of the patient view
    view: null,            // "worklist" | "patient" | "login"
    viewPatient: null,     // patient id shown in the patient view
    focusAlert: null,      // alert id of #/alerts/{id}
    afterLogin: null,      // hash to return to after logging in
    newIds: new Set(),     // rows to mark as new
    unseenUrgent: 0,
  };

  // ---------------------------------------------------------------- DOM helpers
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") el.textContent = v;
        else if (k === "class") el.className = v;
        else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? "" : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(el, c); }); return; }
    el.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  function $(id) { return document.getElementById(id); }
  var main = $("main");

  function setMain() {
    destroyCharts();
    main.replaceChildren();
    for (var i = 0; i < arguments.length; i++) append(main, arguments[i]);
    var h1 = main.querySelector("h1");
    if (h1) { h1.setAttribute("tabindex", "-1"); h1.focus(); }
  }

  function announce(message, urgent) {
    var region = $(urgent ? "announce-urgent" : "announce");
    region.textContent = "";
    // A fresh text node after a tick makes screen readers read repeated messages too.
    window.setTimeout(function () { region.textContent = message; }, 50);
  }

  // ---------------------------------------------------------------- time
  function parseTime(iso) { return iso ? Date.parse(iso) : NaN; }
  function relativeAge(iso, now) {
    var s = Math.round(((now || Date.now()) - parseTime(iso)) / 1000);
    if (!isFinite(s)) return "";
    var future = s < 0;
    s = Math.abs(s);
    var text;
    if (s < 45) text = future ? "in under a minute" : "just now";
    else if (s < 3600) text = Math.round(s / 60) + " min";
    else if (s < 86400) text = Math.round(s / 3600) + " h";
    else text = Math.round(s / 86400) + " d";
    if (s < 45) return text;
    return future ? "in " + text : text + " ago";
  }
  function absolute(iso) {
    var t = parseTime(iso);
    return isFinite(t) ? new Date(t).toLocaleString() : "";
  }
  function timeEl(iso) {
    return h("time", { datetime: iso, title: absolute(iso), "data-relative": "1" },
      relativeAge(iso));
  }
  function refreshAges() {
    document.querySelectorAll("time[data-relative]").forEach(function (t) {
      t.textContent = relativeAge(t.getAttribute("datetime"));
    });
  }

  // ---------------------------------------------------------------- API
  function ApiError(status, problem) {
    this.status = status;
    this.problem = problem || {};
    this.message = (problem && (problem.detail || problem.title)) || "request failed (" + status + ")";
  }
  function api(method, path, body) {
    var init = {
      method: method,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-Wardwatch-CSRF": "1" },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(API + path, init).then(function (resp) {
      var type = resp.headers.get("Content-Type") || "";
      var parsed = type.indexOf("json") >= 0 ? resp.json() : Promise.resolve(null);
      return parsed.then(function (data) {
        if (!resp.ok) {
          if (resp.status === 401 && path !== "/auth/login" && state.view !== "login") {
            sessionEnded();
          }
          throw new ApiError(resp.status, data);
        }
        return data;
      });
    });
  }
  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      if (params[k] !== "" && params[k] !== null && params[k] !== undefined) {
        parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(params[k]));
      }
    });
    return parts.length ? "?" + parts.join("&") : "";
  }
  function showError(target, err) {
    target.textContent = err && err.message ? err.message : String(err);
  }

  // ---------------------------------------------------------------- sound
  // Browsers allow audio only after a user gesture: the context is created on the first
  // click or key press, so the cue is silent until the nurse has interacted with the page.
  var audio = { ctx: null, muted: localStorage.getItem("wardwatch.muted") === "1" };
  function unlockAudio() {
    if (audio.ctx || !(window.AudioContext || window.webkitAudioContext)) return;
    audio.ctx = new (window.AudioContext || window.webkitAudioContext)();
  }
  ["pointerdown", "keydown"].forEach(function (ev) {
    document.addEventListener(ev, unlockAudio, { once: true, capture: true });
  });
  function beep() {
    if (audio.muted || !audio.ctx) return false;
    var ctx = audio.ctx;
    if (ctx.state === "suspended") ctx.resume();
    [0, 0.25].forEach(function (offset) {
      var osc = ctx.createOscillator();
      var gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = 880;
      var t0 = ctx.currentTime + offset;
      gain.gain.setValueAtTime(0.0001, t0);
      gain.gain.exponentialRampToValueAtTime(0.3, t0 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0);
      osc.stop(t0 + 0.2);
    });
    document.body.setAttribute("data-last-beep", String(Date.now()));
    return true;
  }
  function renderMute() {
    var b = $("mute");
    b.setAttribute("aria-pressed", audio.muted ? "true" : "false");
    b.textContent = audio.muted ? "Alert sound muted" : "Mute alert sound";
  }
  $("mute").addEventListener("click", function () {
    audio.muted = !audio.muted;
    localStorage.setItem("wardwatch.muted", audio.muted ? "1" : "0");
    renderMute();
    announce(audio.muted ? "Alert sound muted" : "Alert sound on");
  });

  // ---------------------------------------------------------------- session
  function sessionEnded() {
    stopEvents();
    state.me = null;
    state.known.clear();
    $("session").hidden = true;
    $("nav").hidden = true;
    if (state.view !== "login") {
      state.afterLogin = location.hash;
      renderLogin("Your session has ended. Please log in again.");
    }
  }

  function renderLogin(message) {
    state.view = "login";
    var error = h("div", { id: "login-error", class: "error", role: "alert" });
    var user = h("input", { id: "username", name: "username", autocomplete: "username",
      required: true, autocapitalize: "none", spellcheck: "false" });
    var pass = h("input", { id: "password", name: "password", type: "password",
      autocomplete: "current-password", required: true });
    var form = h("form", { class: "panel login", "aria-labelledby": "login-title", novalidate: true },
      h("h1", { id: "login-title", text: "Log in" }),
      h("div", { class: "field" }, h("label", { for: "username", text: "User name" }), user),
      h("div", { class: "field" }, h("label", { for: "password", text: "Password" }), pass),
      error,
      h("button", { type: "submit", text: "Log in" }));
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      error.textContent = "";
      if (!user.value || !pass.value) {
        error.textContent = "Enter your user name and password.";
        (user.value ? pass : user).focus();
        return;
      }
      api("POST", "/auth/login", { username: user.value, password: pass.value })
        .then(function () { pass.value = ""; return start(); })
        .catch(function (err) {
          error.textContent = err.status === 429
            ? "Too many failed attempts. " + (err.message || "Please wait and try again.")
            : err.status === 401 ? "User name or password is wrong." : err.message;
          pass.value = "";
          pass.focus();
        });
    });
    setMain(form);
    if (message) error.textContent = message;
    user.focus();
  }

  $("logout").addEventListener("click", function () {
    api("POST", "/auth/logout").catch(function () { return null; }).then(function () {
      stopEvents();
      state.me = null;
      state.known.clear();
      $("session").hidden = true;
      $("nav").hidden = true;
      location.hash = "#/";
      renderLogin("You are logged out.");
    });
  });

  function start() {
    return api("GET", "/me").then(function (me) {
      state.me = me;
      $("who").textContent = (me.display_name || me.username) + " (" + me.role + ")";
      $("session").hidden = false;
      $("nav").hidden = false;
      renderMute();
      return api("GET", "/alerts" + query({ status: "active" }));
    }).then(function (active) {
      active.forEach(function (a) { state.known.add(a.id); });
      startEvents();
      var target = state.afterLogin;
      state.afterLogin = null;
      if (target && target !== location.hash) location.hash = target;
      else route();
    }).catch(function (err) {
      if (err && err.status === 401) { state.afterLogin = location.hash; renderLogin(); }
      else setMain(h("h1", { text: "wardwatch" }), h("p", { class: "error", role: "alert", text: err.message }));
    });
  }

  // ---------------------------------------------------------------- live updates
  function startEvents() {
    stopEvents();
    if (!window.EventSource) return;
    var es = new EventSource(API + "/events");
    es.addEventListener("alert", function (ev) {
      var alert;
      try { alert = JSON.parse(ev.data); } catch (e) { return; }
      onAlertChange(alert);
    });
    es.addEventListener("open", function () { document.body.setAttribute("data-live", "1"); });
    es.addEventListener("error", function () {
      document.body.setAttribute("data-live", "0");
      // A closed stream (401 after the session expired) is not retried by the browser.
      if (es.readyState === EventSource.CLOSED && state.me) {
        api("GET", "/me").then(startEvents).catch(function () { return null; });
      }
    });
    state.events = es;
  }
  function stopEvents() {
    if (state.events) { state.events.close(); state.events = null; }
  }

  function isNewUrgent(alert) {
    return !state.known.has(alert.id) && alert.severity === "urgent" && alert.status === "open";
  }

  function onAlertChange(alert) {
    var fresh = !state.known.has(alert.id);
    var urgent = isNewUrgent(alert);
    state.known.add(alert.id);
    if (fresh && alert.status !== "resolved") {
      var who = alert.patient_name || alert.patient;
      var text = "New " + alert.severity + " alert for " + who + ": " + alert.message;
      announce(text, urgent);
      if (urgent) {
        state.newIds.add(alert.id);
        state.unseenUrgent += 1;
        beep();
        showBanner("New urgent alert for " + who + ": " + alert.message);
      }
    }
    if (state.view === "worklist") {
      if (matches(alert)) state.alerts.set(alert.id, alert);
      else state.alerts.delete(alert.id);
      renderAlertList();
    } else if (state.view === "patient" && alert.patient === state.viewPatient) {
      updatePatientAlert(alert);
    }
  }

  function showBanner(text) {
    var b = $("banner");
    b.replaceChildren(text + " ", h("a", { href: "#/", text: "Open worklist" }));
    b.hidden = false;
    document.title = "(" + state.unseenUrgent + ") wardwatch";
  }
  function clearBanner() {
    state.unseenUrgent = 0;
    $("banner").hidden = true;
    document.title = "wardwatch";
  }

  // ---------------------------------------------------------------- worklist
  function matches(alert) {
    var f = state.filters;
    if (f.status === "active" && alert.status === "resolved") return false;
    if (f.status && f.status !== "active" && alert.status !== f.status) return false;
    if (f.severity && alert.severity !== f.severity) return false;
    if (f.patient && alert.patient !== f.patient) return false;
    if (f.hideSnoozed && isSnoozed(alert)) return false;
    return true;
  }
  function isSnoozed(alert) {
    return !!alert.snoozed_until && parseTime(alert.snoozed_until) > Date.now();
  }
  function rank(severity) {
    return Object.prototype.hasOwnProperty.call(SEVERITY_RANK, severity) ? SEVERITY_RANK[severity] : 9;
  }
  function compareAlerts(a, b) {
    if (a.severity !== b.severity) return rank(a.severity) - rank(b.severity);
    var t = parseTime(a.opened_at) - parseTime(b.opened_at);
    return t || a.id - b.id;
  }

  function renderWorklist() {
    state.view = "worklist";
    state.viewPatient = null;
    clearBanner();
    var f = state.filters;
    var statusSel = h("select", { id: "f-status" },
      [["active", "Active (open or acknowledged)"], ["open", "Open"],
        ["acknowledged", "Acknowledged"], ["resolved", "Resolved"]].map(function (o) {
        return h("option", { value: o[0], selected: f.status === o[0], text: o[1] });
      }));
    var sevSel = h("select", { id: "f-severity" },
      [["", "All"], ["urgent", "Urgent"], ["warning", "Warning"], ["info", "Info"]].map(function (o) {
        return h("option", { value: o[0], selected: f.severity === o[0], text: o[1] });
      }));
    var patSel = h("select", { id: "f-patient" }, h("option", { value: "", text: "All my patients" }));
    var snoozeBox = h("input", { id: "f-snoozed", type: "checkbox", checked: f.hideSnoozed });
    function changed() {
      f.status = statusSel.value;
      f.severity = sevSel.value;
      f.patient = patSel.value;
      f.hideSnoozed = snoozeBox.checked;
      loadAlerts();
    }
    [statusSel, sevSel, patSel, snoozeBox].forEach(function (el) { el.addEventListener("change", changed); });

    setMain(
      h("h1", { text: "Worklist" }),
      h("section", { class: "panel", "aria-labelledby": "filters-title" },
        h("h2", { id: "filters-title", class: "visually-hidden", text: "Filters" }),
        h("div", { class: "filters" },
          h("div", { class: "field" }, h("label", { for: "f-status", text: "Status" }), statusSel),
          h("div", { class: "field" }, h("label", { for: "f-severity", text: "Severity" }), sevSel),
          h("div", { class: "field" }, h("label", { for: "f-patient", text: "Patient" }), patSel),
          h("div", { class: "field check" }, snoozeBox,
            h("label", { for: "f-snoozed", text: "Hide snoozed" })))),
      h("section", { "aria-labelledby": "alerts-title" },
        h("h2", { id: "alerts-title" }, "Alerts ", h("span", { id: "alert-count", class: "hint" })),
        h("div", { id: "alerts-error", class: "error", role: "alert" }),
        h("ul", { id: "worklist", class: "worklist panel", "aria-labelledby": "alerts-title" })),
      h("section", { "aria-labelledby": "patients-title" },
        h("h2", { id: "patients-title", text: "My patients" }),
        h("div", { id: "patients", class: "panel" }, h("p", { class: "hint", text: "Loading…" }))));

    api("GET", "/patients").then(function (patients) {
      state.patients = patients;
      patients.forEach(function (p) {
        patSel.appendChild(h("option", { value: p.id, selected: f.patient === p.id, text: p.display_name }));
      });
      renderPatients(patients);
    }).catch(function (err) { showError($("patients"), err); });
    loadAlerts();
  }

  function renderPatients(patients) {
    var box = $("patients");
    if (!box) return;
    if (!patients.length) {
      box.replaceChildren(h("p", { text: "No patients in your care teams." }));
      return;
    }
    box.replaceChildren(h("table", { id: "patient-table" },
      h("caption", { class: "visually-hidden", text: "Patients of your care teams" }),
      h("thead", null, h("tr", null,
        h("th", { scope: "col", text: "Patient" }), h("th", { scope: "col", text: "Care team" }),
        h("th", { scope: "col", text: "Open alerts" }), h("th", { scope: "col", text: "Last reading" }))),
      h("tbody", null, patients.map(function (p) {
        var o = p.open_alerts || {};
        var counts = ["urgent", "warning", "info"].filter(function (s) { return o[s]; })
          .map(function (s) { return o[s] + " " + s; }).join(", ") || "none";
        return h("tr", { "data-patient": p.id },
          h("td", null, h("a", { href: "#/patients/" + encodeURIComponent(p.id), text: p.display_name })),
          h("td", { text: p.care_team || "" }),
          h("td", { text: counts }),
          h("td", null, p.last_reading_at ? timeEl(p.last_reading_at) : "none"));
      }))));
  }

  function loadAlerts() {
    var f = state.filters;
    var err = $("alerts-error");
    api("GET", "/alerts" + query({ status: f.status, severity: f.severity, patient: f.patient }))
      .then(function (alerts) {
        state.alerts = new Map();
        alerts.forEach(function (a) { state.known.add(a.id); if (matches(a)) state.alerts.set(a.id, a); });
        if (err) err.textContent = "";
        renderAlertList();
      })
      .catch(function (e) { if (err) showError(err, e); });
  }

  function renderAlertList() {
    var list = $("worklist");
    if (!list) return;
    var focused = document.activeElement;
    var focusKey = focused && focused.getAttribute && focused.getAttribute("data-key");
    var alerts = Array.from(state.alerts.values()).sort(compareAlerts);
    var openForms = {};
    list.querySelectorAll(".snooze-form").forEach(function (form) {
      openForms[form.getAttribute("data-alert")] = {
        minutes: form.querySelector("input[name=minutes]").value,
        comment: form.querySelector("input[name=comment]").value,
      };
    });
    list.replaceChildren();
    alerts.forEach(function (a) { list.appendChild(alertItem(a, openForms[a.id])); });
    if (!alerts.length) list.appendChild(h("li", { class: "alert-item empty" }, "No alerts match."));
    $("alert-count").textContent = "(" + alerts.length + ")";
    if (focusKey) {
      var again = list.querySelector('[data-key="' + focusKey + '"]');
      if (again) again.focus();
    }
  }

  function alertItem(a, openForm, options) {
    var snoozed = isSnoozed(a);
    var who = a.patient_name || a.patient;
    var li = h("li", {
      class: "alert-item" + (state.newIds.has(a.id) ? " is-new" : "") + (a.status === "resolved" ? " is-resolved" : ""),
      "data-alert": a.id, "data-status": a.status, "data-severity": a.severity,
      "aria-label": a.severity + " alert for " + who,
    },
      h("div", null, h("span", { class: "badge " + a.severity, text: a.severity })),
      h("div", { class: "what" },
        h("div", null,
          (options && options.noPatientLink) ? h("strong", { text: who })
            : h("a", { href: "#/patients/" + encodeURIComponent(a.patient), text: who }),
          " — ", h("span", { class: "message", text: a.message })),
        h("div", { class: "meta" },
          h("span", { class: "status " + a.status, text: statusText(a) }), " · opened ",
          timeEl(a.opened_at), " · ",
          h("a", { href: "#/alerts/" + a.id, "aria-label": "Details of alert " + a.id, text: "details" }),
          snoozed ? [" · ", h("span", { class: "snoozed" }, "snoozed until ",
            h("time", { datetime: a.snoozed_until, title: absolute(a.snoozed_until) },
              new Date(parseTime(a.snoozed_until)).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })))] : null)),
      h("div", { class: "actions" }, actionButtons(a, who)));
    if (openForm) li.appendChild(snoozeForm(a, li, openForm));
    return li;
  }

  function statusText(a) {
    if (a.status === "acknowledged") return "acknowledged by " + (a.acknowledged_by || "?");
    if (a.status === "resolved") return a.auto_cleared ? "cleared automatically" : "resolved by " + (a.resolved_by || "?");
    return "open";
  }

  function actionButtons(a, who) {
    var buttons = [];
    if (a.status === "open") {
      buttons.push(h("button", { type: "button", "data-key": "ack-" + a.id,
        "aria-label": "Acknowledge alert for " + who, text: "Acknowledge",
        onclick: function () { act(a, "acknowledge"); } }));
    }
    if (a.status !== "resolved") {
      buttons.push(h("button", { type: "button", class: "secondary", "data-key": "resolve-" + a.id,
        "aria-label": "Resolve alert for " + who, text: "Resolve",
        onclick: function () { act(a, "resolve"); } }));
      buttons.push(h("button", { type: "button", class: "secondary", "data-key": "snooze-" + a.id,
        "aria-label": "Snooze alert for " + who, "aria-expanded": "false", text: "Snooze",
        onclick: function (ev) { toggleSnooze(a, ev.currentTarget); } }));
    }
    return buttons;
  }

  function act(a, action, body) {
    return api("POST", "/alerts/" + a.id + "/" + action, body || {}).then(function (updated) {
      var label = { acknowledge: "acknowledged", resolve: "resolved", snooze: "snoozed" }[action];
      announce("Alert for " + (a.patient_name || a.patient) + " " + label + ".");
      if (updated && updated.id !== undefined && updated.status) onAlertChange(updated);
      else if (state.view === "worklist") loadAlerts();
      else route();
    }).catch(function (err) {
      var target = $("alerts-error") || $("patient-error");
      if (target) showError(target, err);
      announce(err.message, true);
    });
  }

  function toggleSnooze(a, button) {
    var li = button.closest("li, .alert-focus");
    var existing = li.querySelector(".snooze-form");
    if (existing) { existing.remove(); button.setAttribute("aria-expanded", "false"); return; }
    button.setAttribute("aria-expanded", "true");
    var form = snoozeForm(a, li, null);
    li.appendChild(form);
    form.querySelector("input[name=minutes]").focus();
  }

  function snoozeForm(a, li, values) {
    var mid = "snooze-min-" + a.id;
    var cid = "snooze-comment-" + a.id;
    var eid = "snooze-error-" + a.id;
    var minutes = h("input", { id: mid, name: "minutes", type: "number", min: 1, max: 1440,
      step: 1, value: values ? values.minutes : 30, required: true, "aria-describedby": eid });
    var comment = h("input", { id: cid, name: "comment", type: "text", maxlength: 500,
      value: values ? values.comment : "", "aria-describedby": eid });
    var error = h("div", { id: eid, class: "error", role: "alert" });
    var form = h("form", { class: "snooze-form", "data-alert": a.id, "aria-label": "Snooze alert " + a.id, novalidate: true },
      h("div", { class: "field" }, h("label", { for: mid, text: "Minutes" }), minutes),
      h("div", { class: "field" }, h("label", { for: cid, text: "Comment" }), comment),
      h("button", { type: "submit", text: "Snooze" }),
      h("button", { type: "button", class: "secondary", text: "Cancel", onclick: function () {
        form.remove();
        var b = li.querySelector('[data-key="snooze-' + a.id + '"]');
        if (b) { b.setAttribute("aria-expanded", "false"); b.focus(); }
      } }),
      error);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var n = Number(minutes.value);
      if (!Number.isInteger(n) || n < 1 || n > 1440) {
        error.textContent = "Minutes must be a whole number from 1 to 1440.";
        minutes.focus();
        return;
      }
      api("POST", "/alerts/" + a.id + "/snooze", { minutes: n, comment: comment.value })
        .then(function (updated) {
          form.remove();
          announce("Alert for " + (a.patient_name || a.patient) + " snoozed for " + n + " minutes.");
          if (updated && updated.id !== undefined && updated.status) onAlertChange(updated);
          else if (state.view === "worklist") loadAlerts();
          else route();
        })
        .catch(function (err) { showError(error, err); });
    });
    return form;
  }

  // ---------------------------------------------------------------- patient view
  function renderPatient(patientId, alertId) {
    state.view = "patient";
    state.viewPatient = patientId;
    state.focusAlert = alertId || null;
    var rangeButtons = RANGES.map(function (r) {
      return h("button", { type: "button", class: "secondary", "data-range": r.id,
        "aria-pressed": state.range === r.id ? "true" : "false", text: r.label,
        onclick: function () {
          state.range = r.id;
          rangeButtons.forEach(function (b) {
            b.setAttribute("aria-pressed", b.getAttribute("data-range") === r.id ? "true" : "false");
          });
          loadCharts(patientId, detail);
        } });
    });
    var detail = null;
    setMain(
      h("p", null, h("a", { href: "#/", text: "← Back to worklist" })),
      h("h1", { id: "patient-title", text: "Patient" }),
      h("p", { id: "patient-meta", class: "hint" }),
      h("div", { id: "patient-error", class: "error", role: "alert" }),
      alertId ? h("section", { id: "alert-focus", class: "panel alert-focus", "aria-labelledby": "alert-focus-title" },
        h("h2", { id: "alert-focus-title", text: "Alert " + alertId })) : null,
      h("section", { "aria-labelledby": "trends-title" },
        h("h2", { id: "trends-title", text: "Trends" }),
        h("div", { class: "range", role: "group", "aria-label": "Time range" }, rangeButtons),
        h("div", { id: "charts", class: "charts" })),
      h("section", { "aria-labelledby": "limits-title" },
        h("h2", { id: "limits-title", text: "Alert limits" }),
        h("div", { id: "limits", class: "panel" })),
      h("section", { "aria-labelledby": "proposals-title" },
        h("h2", { id: "proposals-title", text: "Care-plan proposals" }),
        h("div", { id: "proposals", class: "panel" })),
      h("section", { "aria-labelledby": "history-title" },
        h("h2", { id: "history-title", text: "Alert history" }),
        h("ul", { id: "history", class: "worklist panel", "aria-labelledby": "history-title" })));

    var p = alertId
      ? api("GET", "/alerts/" + alertId).then(function (alert) {
        if (alert.patient !== patientId) state.viewPatient = patientId = alert.patient;
        renderFocusAlert(alert);
        return api("GET", "/patients/" + encodeURIComponent(alert.patient));
      })
      : api("GET", "/patients/" + encodeURIComponent(patientId));
    p.then(function (pd) {
      detail = pd;
      $("patient-title").textContent = pd.display_name;
      document.title = pd.display_name + " · wardwatch";
      var meta = "Patient " + pd.id + (pd.care_team ? " · care team " + pd.care_team : "");
      if (pd.care_plan && pd.care_plan.title) meta += " · care plan: " + pd.care_plan.title;
      $("patient-meta").textContent = meta;
      renderLimits(pd.thresholds || []);
      loadCharts(pd.id, pd);
      loadHistory(pd.id);
      loadProposals(pd.id);
    }).catch(function (err) {
      showError($("patient-error"), err);
      if (err.status === 404 || err.status === 403) $("patient-title").textContent = "Patient not available";
    });
  }

  function renderFocusAlert(alert) {
    var box = $("alert-focus");
    if (!box) return;
    var events = alert.events || [];
    box.replaceChildren(
      h("h2", { id: "alert-focus-title", text: "Alert " + alert.id + ": " + alert.rule }),
      h("ul", { class: "worklist" }, alertItem(alert, null, { noPatientLink: true })),
      events.length ? h("h3", { text: "What happened" }) : null,
      events.length ? h("ol", { class: "events" }, events.map(function (e) {
        return h("li", null, timeEl(e.at), " — " + e.action + " by " + e.actor + (e.detail ? " (" + e.detail + ")" : ""));
      })) : null);
  }

  function updatePatientAlert(alert) {
    if (state.focusAlert && String(alert.id) === String(state.focusAlert)) {
      api("GET", "/alerts/" + alert.id).then(renderFocusAlert).catch(function () { return null; });
    }
    var list = $("history");
    if (!list) return;
    var old = list.querySelector('[data-alert="' + alert.id + '"]');
    var item = alertItem(alert, null, { noPatientLink: true });
    if (old) old.replaceWith(item); else list.insertBefore(item, list.firstChild);
  }

  function loadHistory(patientId) {
    api("GET", "/alerts" + query({ patient: patientId })).then(function (alerts) {
      var list = $("history");
      if (!list) return;
      alerts.sort(function (a, b) { return parseTime(b.opened_at) - parseTime(a.opened_at); });
      list.replaceChildren();
      alerts.forEach(function (a) { list.appendChild(alertItem(a, null, { noPatientLink: true })); });
      if (!alerts.length) list.appendChild(h("li", { class: "alert-item empty", text: "No alerts." }));
    }).catch(function (err) { showError($("patient-error"), err); });
  }

  function renderLimits(thresholds) {
    var box = $("limits");
    if (!thresholds.length) { box.replaceChildren(h("p", { text: "No limits apply." })); return; }
    box.replaceChildren(h("table", null,
      h("caption", { class: "visually-hidden", text: "Alert limits for this patient" }),
      h("thead", null, h("tr", null, ["Measurement", "Fires when", "Severity", "Set by"].map(function (t) {
        return h("th", { scope: "col", text: t });
      }))),
      h("tbody", null, thresholds.map(function (t) {
        return h("tr", null,
          h("td", { text: chartKindLabel(t.component || t.kind) }),
          h("td", { text: t.direction + " " + t.value + " " + unitOf(t.kind) }),
          h("td", { text: t.severity }),
          h("td", { text: t.source }));
      }))));
  }

  function limitsFor(chart, thresholds, seriesNames) {
    return (thresholds || []).filter(function (t) {
      if (chart.limitKinds.indexOf(t.kind) < 0) return false;
      // Only the lines of series drawn (no CGM limits on a chart of meter readings).
      if (t.kind === "systolic" || t.kind === "diastolic") return seriesNames.indexOf(t.kind) >= 0;
      if (t.component) return seriesNames.indexOf(t.component) >= 0;
      return seriesNames.indexOf(t.kind) >= 0;
    });
  }

  function destroyCharts() {
    state.charts.forEach(function (u) { u.destroy(); });
    state.charts = [];
  }

  function loadCharts(patientId, detail) {
    var box = $("charts");
    if (!box) return;
    destroyCharts();
    box.replaceChildren();
    var range = RANGES.filter(function (r) { return r.id === state.range; })[0];
    var end = new Date();
    var startAt = new Date(end.getTime() - range.seconds * 1000);
    var thresholds = detail ? detail.thresholds : [];
    CHARTS.forEach(function (chart) {
      var fig = h("figure", { class: "chart panel", id: "chart-" + chart.id, "data-kind": chart.id },
        h("figcaption", { text: chart.title + " (" + chart.unit + ")" }),
        h("div", { class: "plot" }, h("p", { class: "hint", text: "Loading…" })));
      box.appendChild(fig);
      Promise.all(chart.sources.map(function (src) {
        return api("GET", "/patients/" + encodeURIComponent(patientId) + "/observations" + query({
          kind: src.kind, start: startAt.toISOString(), end: end.toISOString(), bucket: "auto",
        }));
      })).then(function (responses) {
        if (state.viewPatient !== patientId || !document.body.contains(fig)) return;
        drawChart(fig, chart, responses, thresholds, startAt, end);
      }).catch(function (err) {
        fig.querySelector(".plot").replaceChildren(h("p", { class: "error", role: "alert", text: err.message }));
      });
    });
  }

  function drawChart(fig, chart, responses, thresholds, startAt, end) {
    // One x axis for all series: the union of bucket times.
    var times = new Set();
    responses.forEach(function (r) { r.points.forEach(function (p) { times.add(Math.round(parseTime(p.t) / 1000)); }); });
    var xs = Array.from(times).sort(function (a, b) { return a - b; });
    var series = [{}];
    var data = [xs];
    var names = [];
    var total = 0;
    var last = [];
    responses.forEach(function (r, i) {
      var src = chart.sources[i];
      var byT = new Map();
      r.points.forEach(function (p) { byT.set(Math.round(parseTime(p.t) / 1000), p); total += p.count || 0; });
      var parts = src.components
        ? src.components.map(function (c) { return { label: c.label, color: c.color, name: c.name, get: function (p) { var v = p.components && p.components[c.name]; return v ? v.mean : null; } }; })
        : [{ label: src.label, color: src.color, name: src.kind, get: function (p) { return p.mean; } }];
      parts.forEach(function (part) {
        var ys = xs.map(function (x) { var p = byT.get(x); return p ? round1(part.get(p)) : null; });
        if (!ys.some(function (y) { return y !== null; })) return;
        names.push(part.name);
        series.push({ label: part.label, stroke: part.color, width: 2, spanGaps: true,
          points: { show: true, size: 5, fill: part.color } });
        data.push(ys);
        var lastY = ys.filter(function (y) { return y !== null; }).pop();
        last.push(part.label + " " + lastY);
      });
    });
    var plot = fig.querySelector(".plot");
    // Without readings, list the limits of the chart's first source.
    var first = chart.sources[0];
    var limits = limitsFor(chart, thresholds, names.length ? names
      : (first.components ? first.components.map(function (c) { return c.name; }) : [first.kind]));
    fig.setAttribute("data-points", String(xs.length));
    fig.setAttribute("data-limits", String(limits.length));
    var limitList = limits.length ? h("ul", { class: "limits", "aria-label": chart.title + " limits" },
      limits.map(function (t) {
        return h("li", { class: "limit", text: limitLabel(t) + " " + chart.unit + " (" + t.severity + ", " + t.source + ")" });
      })) : null;
    if (!xs.length) {
      plot.replaceChildren(h("p", { class: "empty", text: "No readings in this range." }));
      if (limitList) fig.appendChild(limitList);
      return;
    }
    limits.forEach(function (t) {
      series.push({ label: limitLabel(t), stroke: LIMIT_COLORS[t.severity] || "#3d4f63", width: 1.5,
        dash: [6, 4], points: { show: false }, class: "limit-series" });
      data.push(xs.map(function () { return t.value; }));
    });
    plot.setAttribute("role", "img");
    plot.setAttribute("aria-label", chart.title + ": " + total + " readings in " + xs.length +
      " points; latest " + last.join(", ") + " " + chart.unit + (limits.length ? "; " + limits.length + " limit lines" : ""));
    plot.replaceChildren();
    var width = Math.max(280, plot.clientWidth || fig.clientWidth - 32 || 480);
    var u = new uPlot({
      width: width, height: 220,
      scales: { x: { time: true, min: startAt.getTime() / 1000, max: end.getTime() / 1000 } },
      axes: [{ stroke: "#1b1b1b", grid: { stroke: "#e3e6ea" } },
        { stroke: "#1b1b1b", grid: { stroke: "#e3e6ea" }, size: 50 }],
      series: series,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    }, data, plot);
    state.charts.push(u);
    if (limitList) fig.appendChild(limitList);
  }

  function limitLabel(t) {
    var what = t.component || (t.kind === chartKindLabel(t.kind) ? t.kind : chartKindLabel(t.kind));
    return what + " limit " + (t.direction === "below" ? "<" : ">") + " " + t.value;
  }
  function chartKindLabel(kind) {
    return { body_weight: "weight", heart_rate: "heart rate", spo2: "SpO₂", glucose: "glucose",
      cgm_glucose: "CGM glucose", systolic: "systolic", diastolic: "diastolic",
      respiratory_rate: "respiratory rate", body_temperature: "temperature" }[kind] || kind.replace(/_/g, " ");
  }
  function unitOf(kind) {
    return { blood_pressure: "mmHg", systolic: "mmHg", diastolic: "mmHg", body_weight: "kg",
      glucose: "mg/dL", cgm_glucose: "mg/dL", spo2: "%", heart_rate: "/min",
      respiratory_rate: "/min", body_temperature: "°C" }[kind] || "";
  }
  function round1(v) { return v === null || v === undefined ? null : Math.round(v * 10) / 10; }

  function loadProposals(patientId) {
    api("GET", "/proposals" + query({ patient: patientId, status: "proposed" })).then(function (proposals) {
      var box = $("proposals");
      if (!box) return;
      if (!proposals.length) { box.replaceChildren(h("p", { text: "No pending proposals." })); return; }
      box.replaceChildren.apply(box, proposals.map(proposalItem));
    }).catch(function (err) { showError($("patient-error"), err); });
  }

  function proposalItem(p) {
    var nid = "proposal-note-" + p.id;
    var eid = "proposal-error-" + p.id;
    var note = h("input", { id: nid, type: "text", maxlength: 500 });
    var error = h("div", { id: eid, class: "error", role: "alert" });
    var change = p.change && Object.keys(p.change).length ? describeChange(p.change) : null;
    function decide(accept) {
      api("POST", "/proposals/" + p.id + "/" + (accept ? "accept" : "reject"), { note: note.value })
        .then(function (decided) {
          var status = (decided && decided.status) || (accept ? "accepted" : "rejected");
          announce("Proposal " + status + ": " + p.description);
          div.replaceChildren(h("h3", { text: p.description }),
            h("p", { class: "status", "data-status": status, text: "Proposal " + status + "." }));
          div.setAttribute("data-status", status);
          var h2 = $("proposals-title");
          if (h2) { h2.setAttribute("tabindex", "-1"); h2.focus(); }
          if (accept && state.viewPatient) {
            api("GET", "/patients/" + encodeURIComponent(state.viewPatient)).then(function (pd) {
              renderLimits(pd.thresholds || []);
            }).catch(function () { return null; });
          }
        })
        .catch(function (err) { showError(error, err); });
    }
    var div = h("div", { class: "proposal", "data-proposal": p.id, "data-status": p.status },
      h("h3", { text: p.description }),
      h("p", { class: "hint" }, "Proposed ", timeEl(p.created_at),
        p.due ? [" · due ", h("time", { datetime: p.due, title: absolute(p.due) }, absolute(p.due))] : null),
      change ? h("p", { text: "Changes the care plan: " + change }) : null,
      h("div", { class: "decide" },
        h("div", { class: "field" }, h("label", { for: nid, text: "Note (optional)" }), note),
        h("button", { type: "button", "aria-label": "Approve: " + p.description, text: "Approve",
          onclick: function () { decide(true); } }),
        h("button", { type: "button", class: "secondary", "aria-label": "Reject: " + p.description, text: "Reject",
          onclick: function () { decide(false); } })),
      error);
    return div;
  }

  function describeChange(change) {
    var parts = [];
    Object.keys(change.schedule || {}).forEach(function (k) {
      parts.push(k.replace(/_/g, " ") + " every " + change.schedule[k] + " h");
    });
    Object.keys(change.thresholds || {}).forEach(function (k) {
      parts.push(k + " = " + change.thresholds[k]);
    });
    return parts.join("; ") || JSON.stringify(change);
  }

  // ---------------------------------------------------------------- router
  function route() {
    if (!state.me) return;
    var hash = location.hash || "#/";
    var m;
    if ((m = hash.match(/^#\/patients\/([^/]+)$/))) renderPatient(decodeURIComponent(m[1]));
    else if ((m = hash.match(/^#\/alerts\/(\d+)$/))) renderPatient(null, m[1]);
    else renderWorklist();
  }
  window.addEventListener("hashchange", function () {
    if (state.me) route(); else state.afterLogin = location.hash;
  });
  // The skip link must not change the route: it only moves focus to the content.
  document.querySelector(".skip-link").addEventListener("click", function (ev) {
    ev.preventDefault();
    main.focus();
  });
  window.setInterval(refreshAges, 30000);
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(function () {
      state.charts.forEach(function (u) {
        var w = u.root.parentElement.clientWidth;
        if (w > 0) u.setSize({ width: w, height: 220 });
      });
    }, 200);
  });

  // Exposed for the browser tests and for debugging in the console: read-only helpers.
  window.wardwatch = { beep: beep, relativeAge: relativeAge, compareAlerts: compareAlerts, state: state };

  start();
})();
