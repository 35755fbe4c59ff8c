"""Server-rendered pages. Every dynamic value goes through html.escape.

No inline script or style (the Content-Security-Policy forbids both): behaviour is
in ``static/*.js``, looks in ``static/app.css``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from html import escape
from typing import Any

from storage.users import Session

from .auth import HOME, PERMISSIONS
from .health import PARTS

CONSENT_CHOICES = ("granted", "implied", "declined", "revoked", "abandoned", "error", "unknown")
NAV = (("/agent", "My calls", ("calls.own",)), ("/supervisor", "Recordings", ("recordings.read",)),
       ("/officer", "Officer", ("subjects",)), ("/admin", "Admin", ("admin",)))


def _state(ok: bool, text: str) -> str:
    return f'<span class="{"ok" if ok else "bad"}">{escape(text)}</span>'


def _when(ts: float | str | None) -> str:
    if ts is None or ts == "":
        return "—"
    if isinstance(ts, str):
        return escape(ts.replace("T", " ").replace("+00:00", " UTC"))
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def layout(title: str, body: str, *, session: Session | None = None, scripts: Iterable[str] = (),
           page: str = "") -> str:
    head_extra = f'<meta name="csrf-token" content="{escape(session.csrf)}">' if session else ""
    nav = ""
    if session is not None:
        perms = PERMISSIONS.get(session.user.role, frozenset())
        links = "".join(f'<a href="{href}"{" aria-current=page" if href == page else ""}>{escape(text)}</a>'
                        for href, text, need in NAV if perms & set(need))
        nav = (f'<nav><span class="brand">callvault</span>{links}<span class="who" id="who">'
               f'{escape(session.user.name)} ({escape(session.user.role)})</span>'
               f'<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" '
               f'value="{escape(session.csrf)}"><button type="submit" id="logout">Sign out</button></form></nav>')
    js = "".join(f'<script src="/static/{escape(s)}" defer></script>' for s in scripts)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width'><title>{escape(title)}</title>"
            f'<link rel="stylesheet" href="/static/app.css">{head_extra}{js}</head>'
            f"<body>{nav}<main><h1>{escape(title)}</h1>{body}</main></body></html>")


def status_page(down: list[str]) -> str:
    """Up or down, part by part: no versions, addresses or errors before sign-in."""
    names = {"ami": "Asterisk (AMI)", "storage": "Archive storage", "database": "Database"}
    rows = "".join(f"<tr><th>{escape(names[p])}</th><td id='{p}-state'>"
                   f"{_state(p not in down, 'down' if p in down else 'up')}</td></tr>" for p in PARTS)
    overall = _state(not down, "down" if down else "up")
    return layout("callvault", f'<p id="overall">callvault is {overall}</p><table id="parts">{rows}</table>'
                               f'<p><a href="/login">Sign in</a></p>')


def login_page(*, csrf: str, next_url: str, message: str = "") -> str:
    note = f'<p class="bad" id="login-error" role="alert">{escape(message)}</p>' if message else ""
    return layout("callvault: sign in", f"""{note}
<form method="post" action="/login" class="stack" id="login-form">
<input type="hidden" name="csrf" value="{escape(csrf)}">
<input type="hidden" name="next" value="{escape(next_url)}">
<label>User name <input name="name" id="name" autocomplete="username" required maxlength="64"></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required
maxlength="1024"></label>
<button type="submit" id="sign-in">Sign in</button>
</form>""")


RECORDING_TEXT = {"not-recorded": "not recorded", "recording": "recording", "paused": "paused",
                  "stopped": "stopped"}


def _clock(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%H:%M:%S")


def pause_list(pauses: list[dict[str, Any]]) -> str:
    """Each PCI pause of a call: from, until (or "now") and what paused it."""
    items = "".join(f'<li data-by="{escape(p["by"])}">{_clock(p["from"])}–'
                    f'{_clock(p["until"]) if p["until"] is not None else "now"} ({escape(p["by"])})</li>'
                    for p in pauses)
    return f'<ul class="pauses">{items}</ul>' if items else ""


def call_row(c: dict[str, Any], *, can_pause: bool) -> str:
    rec = c["recording"]
    button = ""
    if can_pause and rec in ("recording", "paused") and not c["ended"]:
        label = "Resume recording" if rec == "paused" else "Pause recording (card details)"
        button = (f'<button class="pause" data-call-id="{escape(c["call_id"])}" '
                  f'data-paused="{"true" if rec == "paused" else "false"}">{escape(label)}</button>')
    return (f'<tr data-call-id="{escape(c["call_id"])}"{" class=ended" if c["ended"] else ""}>'
            f'<td>{_when(c["started_at"])}</td><td>{escape(c["did"] or "—")}</td><td>{escape(c["caller"] or "—")}</td>'
            f'<td class="consent" data-state="{escape(c["consent"])}">{escape(c["consent"])}</td>'
            f'<td class="recording" data-state="{escape(rec)}">{escape(RECORDING_TEXT.get(rec, rec))}'
            f'{" (call ended)" if c["ended"] else ""}{pause_list(c.get("pauses", []))}</td><td>{button}</td></tr>')


def agent_page(session: Session, calls: list[dict[str, Any]], *, can_pause: bool) -> str:
    rows = "".join(call_row(c, can_pause=can_pause) for c in calls)
    body = f"""<p class="muted">Your calls, live: whether the caller consented and whether recording is running.
While the caller reads out card details, pause the recording.</p>
<p id="live-state" class="muted" data-state="connecting">connecting…</p>
<table id="calls" data-can-pause="{"true" if can_pause else "false"}"><thead><tr><th>Started</th><th>DID</th>
<th>Caller</th><th>Consent</th><th>Recording</th><th></th></tr></thead><tbody>{rows}</tbody></table>
<p id="no-calls" class="muted"{" hidden" if calls else ""}>No calls right now.</p>"""
    return layout("callvault: my calls", body, session=session, scripts=("common.js", "agent.js"), page="/agent")


def _option(value: str, current: str, text: str | None = None) -> str:
    sel = " selected" if value == current else ""
    return f'<option value="{escape(value)}"{sel}>{escape(text or value or "any")}</option>'


def supervisor_page(session: Session, query: dict[str, str], results: list[dict[str, Any]] | None,
                    message: str, agents: list[str], *, can_hold: bool, playback: str) -> str:
    q = {k: query.get(k, "") for k in ("since", "until", "agent", "phone", "consent", "did")}
    agent_opts = _option("", q["agent"]) + "".join(_option(a, q["agent"]) for a in agents)
    consent_opts = _option("", q["consent"]) + "".join(_option(c, q["consent"]) for c in CONSENT_CHOICES)
    form = f"""<form method="get" action="/supervisor" class="search" id="search">
<label>From <input type="date" name="since" value="{escape(q["since"])}"></label>
<label>To <input type="date" name="until" value="{escape(q["until"])}"></label>
<label>Agent <select name="agent">{agent_opts}</select></label>
<label>Phone number <input name="phone" inputmode="tel" value="{escape(q["phone"])}" placeholder="+27…"></label>
<label>Consent <select name="consent">{consent_opts}</select></label>
<label>DID <input name="did" inputmode="tel" value="{escape(q["did"])}"></label>
<button type="submit" id="search-button">Search</button></form>"""
    note = f'<p class="bad" role="alert">{escape(message)}</p>' if message else ""
    player = f"""<section id="player-panel"><h2>Play or download</h2>
<label class="wide">Reason (written to the audit ledger before the key is used)
<input id="reason" maxlength="500" placeholder="e.g. complaint #4711 quality review"></label>
<audio id="player" controls preload="none"></audio>
<p id="player-status" class="muted" role="status">{escape(playback)}</p></section>"""
    table = ""
    if results is not None:
        rows = "".join(_result_row(r, can_hold) for r in results)
        table = (f'<p class="muted" id="result-count">{len(results)} recording(s)</p>'
                 f'<table id="results"><thead><tr><th>Started</th><th>Length</th><th>DID</th><th>Agent</th>'
                 f'<th>Consent</th><th>State</th><th>Legal hold</th><th></th></tr></thead><tbody>{rows}</tbody></table>')
    return layout("callvault: recordings", form + note + player + table, session=session,
                  scripts=("common.js", "supervisor.js"), page="/supervisor")


def _result_row(r: dict[str, Any], can_hold: bool) -> str:
    rid = escape(r["recording_id"])
    length = f'{r["duration_s"]:.0f} s' if r["duration_s"] is not None else "—"
    hold_attr = "" if can_hold else " disabled title='officers only'"
    hold = (f'<input type="checkbox" class="hold" data-id="{rid}" aria-label="legal hold"'
            f'{" checked" if r["legal_hold"] else ""}{hold_attr}>')
    actions = ""
    if r["playable"]:
        actions = (f'<button class="play" data-id="{rid}">Play</button>'
                   f'<button class="download" data-id="{rid}" data-format="wav">WAV</button>'
                   f'<button class="download" data-id="{rid}" data-format="age">age file</button>')
    return (f'<tr data-id="{rid}"><td>{_when(r["started_at"])}</td><td>{length}</td><td>{escape(r["did"])}</td>'
            f'<td>{escape(", ".join(dict.fromkeys(a["agent"] for a in r["agents"])) or r["agent"] or "—")}</td><td>{escape(r["consent_state"])}</td><td>{escape(r["state"])}</td>'
            f'<td>{hold}</td><td class="actions">{actions}</td></tr>')


def _queue(queue: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(queue.items())) or "empty"


def _bytes(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**30:.1f} GiB"


def admin_page(session: Session, h: dict[str, Any], snippets: dict[str, str]) -> str:
    ami, arch, storage, keys = h["ami"], h["archiver"], h["storage"], h["keys"]
    queue = escape(_queue(h["queue"]))
    rows = [
        ("AMI", _state(ami["connected"], ami["state"]), escape(ami.get("last_error", "") if not ami["connected"] else "")),
        ("Asterisk version", escape(ami.get("asterisk_version") or "unknown"), ""),
        ("FastAGI", _state(bool(h["agi"].get("listening")), "listening" if h["agi"].get("listening") else "stopped"),
         escape(f"{h['agi'].get('total', 0)} handled, {h['agi'].get('errors', 0)} failed closed")),
        ("Archiver", _state(bool(arch.get("running")), "running" if arch.get("running") else "stopped"),
         escape(arch.get("last_error", ""))),
        ("Queue by state", queue, ""),
        ("Last archived", _when(h["last_archive_at"]), ""),
        ("Storage", _state(bool(storage["reachable"]), "reachable" if storage["reachable"] else "not reachable"),
         escape(storage["detail"])),
        ("Database", _state(h["database"] == "up", "answers" if h["database"] == "up" else "not answering"), ""),
        ("Playback on this node", _state(keys["playback"], "available" if keys["playback"] else "refused"),
         escape(keys["playback_refusal"])),
    ]
    health = "".join(f'<tr><th>{a}</th><td>{b}</td><td>{c}</td></tr>' for a, b, c in rows)
    dead = "".join(f'<tr><td>{escape(d["recording_id"])}</td><td>{_when(d["started_at"])}</td><td>{d["attempts"]}</td>'
                   f'<td>{"quarantined" if d["quarantined"] else "none"}</td>'
                   f'<td>{escape(d["last_error"])}</td></tr>' for d in h["dead_letters"])
    dead_html = (f'<table id="dead-letters"><thead><tr><th>Recording</th><th>Started</th><th>Tries</th>'
                 f'<th>Spool file</th><th>Last error</th></tr></thead><tbody>{dead}</tbody></table>'
                 if dead else '<p id="dead-letters">None.</p>')
    held = arch.get("quarantined", 0)
    if held:
        dead_html = (f'<p id="quarantine-alert" class="bad" role="alert">{held} dead-lettered recording(s) keep '
                     'unencrypted audio in the spool\'s quarantine (.callvault-quarantine). Retry each with '
                     '<code>callvault recordings retry ID</code>, or erase it with <code>callvault recordings '
                     'erase ID --reason ...</code> (docs/operations.md).</p>' + dead_html)
    fp = "".join(f'<tr><td>encrypts to</td><td><code>{escape(k["fingerprint"])}</code></td>'
                 f'<td><code>{escape(k["public_key"])}</code></td></tr>' for k in keys["recipients"])
    fp += "".join(f'<tr><td>decrypts (this node)</td><td><code>{escape(k["fingerprint"])}</code></td>'
                  f'<td><code>{escape(k["public_key"])}</code></td></tr>' for k in keys["retrieval_identities"])
    problem = f'<p class="bad">{escape(keys["recipients_problem"])}</p>' if keys["recipients_problem"] else ""
    snippet_html = "".join(f"<h3>{escape(name.replace('_', '.'))}</h3><pre>{escape(text)}</pre>"
                           for name, text in snippets.items())
    lab = ""
    if h["lab_mode"]:
        lab = """<section id="test-call"><h2>Place a test call (lab)</h2>
<form id="test-call-form" class="search"><label>DID <input name="did" id="test-did" value="27215550100"></label>
<button type="submit">Place a test call</button></form><p id="test-call-result" class="muted" role="status"></p>
</section>"""
    nodes = "".join(f'<tr data-node="{escape(n["name"])}"><td>{escape(n["name"])}</td><td>{escape(n["role"])}</td>'
                    f'<td>{_state(n["state"] == "up", n["state"])}</td><td>{n["seen_ago_s"]:g} s ago</td>'
                    f'<td>{escape(n["ami"])}</td><td>{escape(_queue(n["queue"]))}</td>'
                    f'<td>{_bytes(n["spool_free_bytes"])}</td><td>{escape(n["version"])}</td></tr>'
                    for n in h.get("nodes", []))
    nodes_html = (f'<h2>Nodes</h2><table id="nodes"><thead><tr><th>Node</th><th>Role</th><th>State</th>'
                  f'<th>Last seen</th><th>AMI</th><th>Queue</th><th>Spool free</th><th>Version</th></tr></thead>'
                  f'<tbody>{nodes}</tbody></table>')
    body = (f'<h2>Health</h2><table id="health">{health}</table>{nodes_html}<h2>Dead letters</h2>{dead_html}'
            f'<h2>Keys</h2>{problem}<table id="keys">{fp}</table>{lab}<h2>Dialplan</h2>'
            f'<p class="muted">Paste each where it says (see docs/operations.md).</p>{snippet_html}')
    return layout("callvault: admin", body, session=session, scripts=("common.js", "admin.js"), page="/admin")


def home_for(session: Session) -> str:
    return HOME.get(session.user.role, "/")
