"""Server-rendered pages. Every dynamic value goes through html.escape."""

from __future__ import annotations

from html import escape

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem;color:#1b1f24}
h1{font-size:1.4rem} table{border-collapse:collapse} td,th{padding:.3rem .8rem;
border-bottom:1px solid #ddd;text-align:left} .ok{color:#0a7d28;font-weight:600}
.bad{color:#b3261e;font-weight:600}
"""


def _state(ok: bool, text: str) -> str:
    return f'<span class="{"ok" if ok else "bad"}">{escape(text)}</span>'


def layout(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>")


def status_page(h: dict) -> str:
    ami, agi, arch = h["ami"], h["agi"], h["archiver"]
    rows = [
        ("Asterisk (AMI)", _state(ami["state"] == "connected", ami["state"]),
         escape(ami.get("asterisk_version", "") or ami.get("last_error", ""))),
        ("FastAGI listener", _state(bool(agi.get("listening")), "listening" if agi.get("listening") else "stopped"),
         escape(f"{agi.get('active', 0)} calls in progress, {agi.get('total', 0)} handled")),
        ("Archiver", _state(bool(arch.get("running")), "running" if arch.get("running") else "stopped"),
         escape(f"{arch.get('spool_files', 0)} files in spool")),
    ]
    table = "".join(f"<tr><th>{a}</th><td id='{a.split()[0].lower()}-state'>{b}</td><td>{c}</td></tr>"
                    for a, b, c in rows)
    return layout("callvault", f"<table>{table}</table>")
