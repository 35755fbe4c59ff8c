"""The calls benchmark's table (bench/calls_bench.py): serve, Asterisk and the floor per call."""

from __future__ import annotations

import statistics

from . import calls_profile

TARGETS = {"declined": 0.10, "recorded": 0.25}  # callvault CPU / Asterisk CPU per call


def _spread(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def _ami_ms(results: dict, label: str, us: dict[str, float]) -> float:
    runs = results["passes"].get(f"declined/{label}", [])
    events = statistics.median(sum(r["ami_events_per_call"].values()) for r in runs) if runs else 0.0
    return events * max(us.values()) / 1000


def report(results: dict) -> str:
    head = (f"{results['calls']} calls a scenario, {results['concurrency']} at a time, {results['rounds']} "
            "round(s); CPU ms per call (median, range over rounds); ratio = callvault / Asterisk")
    columns = (f"{'scenario':<10} {'AMI user':<11} {'callvault':>16} {'Asterisk':>16} {'ratio':>18} {'target':>7}"
               f" {'RGW/rec':>10} {'AMI ev/call':>12}")
    lines = [head, "", columns] + ab_table(results)
    for key, runs in results["passes"].items():
        name, label = key.split("/")

        def col(part: str, runs: list[dict] = runs) -> list[float]:
            return [r["ms_per_call"][part] for r in runs]

        events = [sum(r["ami_events_per_call"].values()) for r in runs]
        rgw = _spread(col("rgw"), ".0f") if name == "recorded" else "-"
        lines.append(f"{name:<10} {label:<11} {_spread(col('callvault'), '.1f'):>16} "
                     f"{_spread(col('asterisk'), '.1f'):>16} {_spread([r['ratio'] for r in runs], '.3f'):>18} "
                     f"{TARGETS[name]:>7.2f} {rgw:>10} {_spread(events, '.1f'):>12}")
    lines.append("")
    for key, runs in results["passes"].items():
        last = runs[-1]
        lines.append(f"{key}: AMI events/call " + ", ".join(f"{k} {v:.1f}" for k, v in last["ami_events_per_call"].items()))
        if "s3_requests_per_recording" in last:
            s3 = last["s3_requests_per_recording"]
            lines.append(f"{key}: S3 requests/recording {sum(s3.values()):.2f} ("
                         + ", ".join(f"{k} {v:.2f}" for k, v in s3.items())
                         + f"); recordings {last['recording_seconds']:.1f} s long")
        idle = results["idle_ms_per_s"][label]
        net = {part: [r["ms_per_call"][part] - idle[part] * r["wall_seconds"] / max(r["calls"] - r["failed"], 1)
                      for r in runs] for part in idle}
        lines.append(f"{key}: net of idle, ms/call: " + ", ".join(f"{k} {_spread(v, '.1f')}" for k, v in net.items()))
        if any(r["failed"] for r in runs):
            lines.append(f"{key}: failed calls {[r['failed'] for r in runs]}")
    lines += floor_table(results)
    us = results["ami_us_per_event"]
    lines.append("AMI session per event (socket to handlers, one event per read, CPU of the receiver): "
                 + ", ".join(f"{k} {v:.0f} us" for k, v in us.items())
                 + f" (the event loop alone: {results['ami_floor_us_per_event']:.0f} us, a bare panoramisk Manager: "
                 f"{results.get('ami_panoramisk_us_per_event', 0):.0f} us); at the filtered and "
                 f"unfiltered events/call: {_ami_ms(results, 'filtered', us):.2f} and "
                 f"{_ami_ms(results, 'unfiltered', us):.2f} ms per declined call")
    for label, idle in results["idle_ms_per_s"].items():
        lines.append(f"idle CPU ms/s ({label}): " + ", ".join(f"{k} {v:.2f}" for k, v in idle.items()))
    for name, r in results.get("profiles", {}).items():
        lines += ["", calls_profile.table(r["profile"], name, r["ms_per_call"]["callvault"])]
    return "\n".join(lines)




def floor_table(results: dict) -> list[str]:
    """The floor's rows: its CPU per call next to Asterisk's and to callvault's (product AMI user)."""
    if not results.get("floor"):
        return []
    lines = ["", ("the floor (bench/calls_floor.py: no-logic FastAGI, the product's AMI user, one bare put_object "
             "per recording), same lab, same run; CPU ms per call"),
             (f"{'scenario':<10} {'floor':>16} {'Asterisk':>16} {'floor/Asterisk':>18} {'callvault/floor':>18}"
             f" {'callvault/Ast.':>15} {'RGW/rec':>10}")]
    for name, runs in results["floor"].items():
        floor = [r["ms_per_call"]["floor"] for r in runs]
        ours = [r["ms_per_call"]["callvault"] for r in results["passes"].get(f"{name}/filtered", [])]
        mine = statistics.median(ours) if ours else float("nan")
        ratio = [r["ratio"] for r in results["passes"].get(f"{name}/filtered", [])] or [float("nan")]
        rgw = _spread([r["ms_per_call"]["rgw"] for r in runs], ".0f") if name == "recorded" else "-"
        lines.append(f"{name:<10} {_spread(floor, '.1f'):>16} "
                     f"{_spread([r['ms_per_call']['asterisk'] for r in runs], '.1f'):>16} "
                     f"{_spread([r['ratio'] for r in runs], '.3f'):>18} "
                     f"{_spread([mine / f for f in floor], '.2f'):>18} {_spread(ratio, '.3f'):>15} {rgw:>10}")
        if any(r["failed"] for r in runs):
            lines.append(f"floor/{name}: failed calls {[r['failed'] for r in runs]}")
    return lines


def ab_table(results: dict) -> list[str]:
    """--ab: serve's CPU per declined call, this checkout against the other, pair by pair."""
    if "ab" not in results:
        return []
    lines = []
    for build in ("this", "ab"):
        ms = [r["ms_per_call"]["callvault"] for r in results["ab"][build]]
        ast = [r["ms_per_call"]["asterisk"] for r in results["ab"][build]]
        lines.append(f"{'declined':<10} {build:<11} {_spread(ms, '.2f'):>16} {_spread(ast, '.1f'):>16} "
                     f"[{', '.join(f'{m:.2f}' for m in ms)}]")
    return lines
