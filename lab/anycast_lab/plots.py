"""PNG plots of the bench reports (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

POP_COLOURS = {"hkg": "#2ca02c", "tyo": "#ff7f0e", "fra": "#1f77b4", "gru": "#9467bd"}
NO_ANSWER, BAD_RCODE = "no answer", "error rcode"
PROFILE_NAMES = {"daemon": "ours (anycast_health)", "seed002": "seed 002 (keepalived + dig)"}


def _pyplot():
    import matplotlib  # noqa: PLC0415 - loaded only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def lane_of(point: list) -> str:
    """A timeline point [t, nsid, rcode] -> its lane: the server that answered, or what went wrong."""
    _, nsid, rcode = point
    if rcode is None:
        return NO_ANSWER
    if rcode != "NOERROR":
        return BAD_RCODE
    return nsid or "(no nsid)"


def lanes(results: list[dict], node: str) -> list[str]:
    """The y lanes shared by the plots of one fault: NODE first, other servers, then failures."""
    servers = sorted({lane_of(p) for r in results for p in r["timeline"]} - {NO_ANSWER, BAD_RCODE, node})
    return [NO_ANSWER, BAD_RCODE, *reversed(servers), node]


def timeline_png(results: list[dict], node: str, pop_of, path: Path) -> None:
    """One fault, one panel per profile: every query a dot at its send time, in the lane of the
    server that answered (coloured by its PoP), the longest outage shaded."""
    plt = _pyplot()
    ys = lanes(results, node)
    fig, axes = plt.subplots(len(results), 1, figsize=(10, 1.2 + 1.6 * len(results)), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], results, strict=True):
        for lane in ys:
            pts = [p[0] for p in r["timeline"] if lane_of(p) == lane]
            if not pts:
                continue
            colour = "#d62728" if lane == NO_ANSWER else "#000000" if lane == BAD_RCODE else \
                POP_COLOURS.get(pop_of(lane), "#7f7f7f")
            ax.scatter(pts, [ys.index(lane)] * len(pts), s=6, c=colour, marker="|" if lane == NO_ANSWER else "o",
                       linewidths=1)
        a, b = r["outage_window_s"]
        ax.axvspan(a, b, color="#d62728", alpha=0.15, lw=0)
        ax.axvline(0, color="#444444", lw=1, ls="--")
        if r.get("cleared_s"):
            ax.axvline(r["cleared_s"], color="#444444", lw=1, ls=":")
        ax.set_yticks(range(len(ys)), ys)
        ax.set_ylim(-0.6, len(ys) - 0.4)
        ax.set_title(f"{PROFILE_NAMES.get(r['profile'], r['profile'])}: longest outage {r['outage_ms']} ms",
                     fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds from the fault (dashed: fault; dotted: fault removed; shaded: longest outage)")
    fig.suptitle(f"{results[0]['title']}: the London client's queries, by the server that answered", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def outages_png(rows: list[dict], path: Path) -> None:
    """Longest client outage per fault, ours against seed 002 (horizontal bars, seconds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(rows) + 1.5))
    ys = list(range(len(rows)))[::-1]
    ax.barh([y + 0.2 for y in ys], [r["ours_ms"] / 1000 for r in rows], height=0.4, label=PROFILE_NAMES["daemon"],
            color="#1f77b4")
    ax.barh([y - 0.2 for y in ys], [r["seed_ms"] / 1000 for r in rows], height=0.4, label=PROFILE_NAMES["seed002"],
            color="#ff7f0e")
    for y, r in zip(ys, rows, strict=True):
        ax.text(r["ours_ms"] / 1000, y + 0.2, f" {r['ours_ms'] / 1000:.2f} s", va="center", fontsize=8)
        ax.text(r["seed_ms"] / 1000, y - 0.2, f" {r['seed_ms'] / 1000:.2f} s", va="center", fontsize=8)
    ax.set_yticks(ys, [r["title"] for r in rows])
    ax.set_xlabel("longest client outage (s)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timings_png(rows: list[dict], path: Path) -> None:
    """Idempotent site.yml run time against the number of PoP servers, one line per way (old, new)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ways = list(dict.fromkeys(r.get("way", "new") for r in rows))
    for way in ways:
        mine = [r for r in rows if r.get("way", "new") == way]
        ax.plot([r["servers"] for r in mine], [r["seconds"] for r in mine], marker="o", label=f"{way} way")
        for r in mine:
            ax.annotate(f"{r['seconds']:.0f} s", (r["servers"], r["seconds"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    ax.set_xlabel("PoP servers in the run")
    ax.set_ylabel("idempotent site.yml run (s)")
    ax.set_ylim(bottom=0)
    ax.set_xticks(sorted({r["servers"] for r in rows}))
    ax.grid(alpha=0.3)
    if len(ways) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
