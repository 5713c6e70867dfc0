"""report.html: self-contained, images that decode, best (closest to Retrain) values marked, inconclusive
attacks marked inconclusive, real sizes, reuse and machine load shown, text escaped, renders in a browser."""
from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from prunelora.metrics.attacks import attacks_in
from prunelora.report.html import render_html, results_table, write_html_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVIL = 'tiny<b>&"net'  # a model name full of HTML special characters
METHODS = ["original", "retrain", "finetune", "lora", "prunelora"]
BUDGETS = [1, 2]
NUMERIC = ["ua", "mia_efficacy", "ra", "ta", "forget_test_acc", "mia_attack_acc", "mia_svc_entropy",
           "mia_svc_entropy_acc", "mia_loss_lr", "mia_loss_lr_acc", "sec_per_epoch", "total_sec",
           "peak_memory_mb", "trainable_params", "params", "avg_gap", "cost_vs_retrain"]

# The constructed case (model "vit", longest budget 2): Original and Retrain hold the "best" raw values
# but must not be marked where they do not compete. RA: PruneLoRA is highest (97) but LoRA (95) is closest
# to Retrain (94). MIA: Finetune equals Retrain's 40 exactly, but its attacker was not above chance, so it
# is daggered and PruneLoRA (45) is closest among the rest.
VIT_CASE = {
    "original": {"ra": 99.0, "mia_efficacy": 10.0, "sec_per_epoch": 0.01, "avg_gap": 3.0},
    "retrain": {"ra": 94.0, "mia_efficacy": 40.0, "mia_attack_conclusive": True, "sec_per_epoch": 0.5,
                "avg_gap": 0.0, "cost_vs_retrain": 1.0},
    "finetune": {"ra": 90.0, "mia_efficacy": 40.0, "mia_attack_conclusive": False,
                 "mia_svc_entropy_conclusive": False, "sec_per_epoch": 0.4, "avg_gap": 5.0,
                 "avg_gap_metrics": ["ua", "ra", "ta"]},
    "lora": {"ra": 95.0, "mia_efficacy": 30.0, "mia_attack_conclusive": True, "sec_per_epoch": 0.2, "avg_gap": 2.0},
    "prunelora": {"ra": 97.0, "mia_efficacy": 45.0, "mia_attack_conclusive": True, "sec_per_epoch": 0.3,
                  "avg_gap": 1.0},
}
# The run-level keys newer results.json files carry (old ones lack them all).
EXTRAS = {
    "data_sizes": {"forget_train": 31, "retain_train": 289, "test_retain": 107, "test_forget": 13},
    "reused": {"stages": 11, "sec": 1618.1}, "elapsed_sec": 2.7, "wall_sec": 1620.8,
    "machine_load": {"cores": 2, "threads": 1, "loadavg_start": [1.5, 1.2, 1.0], "loadavg_end": [2.25, 1.5, 1.1],
                     "others_cpu_share": 0.63, "busy": True},
    "warnings": ["the checkpoint forgot class 3 but this evaluation's forget class is 5"],
}


def _fake_logits(path: Path, rng: np.random.Generator, classes: int = 4, n: int = 30) -> None:
    arrays = {}
    for split in ("forget_train", "retain_train", "test_retain", "test_forget"):
        labels = rng.integers(0, classes, n)
        logits = rng.normal(size=(n, classes)).astype(np.float32)
        logits[np.arange(n), labels] += 2.0 if split != "forget_train" else -1.0
        arrays[f"{split}_logits"], arrays[f"{split}_labels"] = logits, labels
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def _mean_row(model: str, method: str, epochs: int | None, rng: np.random.Generator) -> dict:
    row = {"model": model, "model_desc": f"{model} (fake; 1k params)", "method": method, "epochs": epochs,
           "ua": float(rng.uniform(80, 100)), "mia_efficacy": float(rng.uniform(50, 100)),
           "ra": float(rng.uniform(60, 90)), "ta": float(rng.uniform(60, 90)), "forget_test_acc": 0.0,
           "mia_attack_acc": float(rng.uniform(50, 70)), "mia_svc_entropy": float(rng.uniform(0, 100)),
           "mia_svc_entropy_acc": float(rng.uniform(50, 70)), "mia_loss_lr": float(rng.uniform(0, 100)),
           "mia_loss_lr_acc": float(rng.uniform(50, 70)), "sec_per_epoch": float(rng.uniform(0.6, 2.0)),
           "total_sec": float(rng.uniform(1, 5)), "peak_memory_mb": float(rng.uniform(10, 100)),
           "memory_kind": "cpu_peak_rss_growth", "trainable_params": 1000 if "lora" not in method else 100,
           "params": 1000, "mia_holdout_n": 200, "avg_gap": float(rng.uniform(4, 10)) if method != "retrain" else 0.0,
           "cost_vs_retrain": float(rng.uniform(0.1, 0.9)) if method != "retrain" else 1.0}
    if model == "vit" and epochs in (None, max(BUDGETS)):
        row.update(VIT_CASE[method])
    return row


def fake_results(out: Path, *, seeds=(0, 1), aggregated: bool = True, gap: bool = True, extras: bool = True) -> dict:
    """Per-seed rows with logits files, plus (optionally) aggregated rows carrying <key>_std; `extras` adds
    the newer run-level keys (EXTRAS), else the results look like an old results.json."""
    rng = np.random.default_rng(0)
    rows, means = [], []
    for model in (EVIL, "vit"):
        for method in METHODS:
            for epochs in ([None] if method in ("original", "retrain") else BUDGETS):
                means.append(_mean_row(model, method, epochs, rng))
    for index, seed in enumerate(seeds):
        for k, mean in enumerate(means):
            row = {**mean, "seed": seed}
            for key in NUMERIC[:4]:
                row[key] = mean[key] + (0.5 if index % 2 else -0.5) * (len(seeds) > 1)
            tag = f"m{k}" + (f"_seed{seed}" if len(seeds) > 1 else "")
            row["logits_file"] = f"logits/{tag}.npz"
            _fake_logits(out / row["logits_file"], rng)
            rows.append(row)
    if aggregated:
        for mean in means:
            agg = dict(mean, seed=None, n_seeds=len(seeds))
            for key in NUMERIC:
                agg[f"{key}_std"] = 0.7
            rows.append(agg)
    if not gap:
        for row in rows:
            for key in [k for k in row if k.startswith(("avg_gap", "cost_vs_retrain"))]:
                del row[key]
    config = {"data": {"dataset": "digits", "forget_class": 3, "train_per_class": 24, "test_per_class": 12},
              "models": [EVIL, "vit"], "model_args": {"vit": {"depth": 2}}, "methods": METHODS[1:],
              "pretrain": {"epochs": 2}, "unlearn": {"epochs": BUDGETS, "lr": 0.001, "optimizer": "adam",
                                                      "prune_amount": 0.5, "prune_mode": "mask", "lora_r": None},
              "seeds": list(seeds), "device": "cpu", "precision": "fp32", "preset": "smoke", "out": str(out)}
    environment = {"prunelora": "0.1.0", "python": "3.11", "torch": "2.x", "device": "cpu", "threads": 1}
    results = {"config": config, "rows": rows, "environment": environment, "wall_sec": 12.5}
    if not extras:
        for row in rows:
            for key in [k for k in row if k.endswith(("_conclusive", "holdout_n", "avg_gap_metrics"))]:
                del row[key]
    return {**results, **(EXTRAS if extras else {})}


class Cells(HTMLParser):
    """(model, method, column) -> (classes, text) of the results table's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str], tuple[set[str], str]] = {}
        self.imgs: list[dict] = []
        self._row: dict | None = None
        self._cell: tuple | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs)
        if tag == "tr" and "data-method" in attrs:
            self._row = attrs
        if tag == "td" and self._row and "data-col" in attrs:
            key = (self._row["data-model"], self._row["data-method"], attrs["data-col"])
            self._cell, self._text = (key, set(attrs.get("class", "").split())), []

    def handle_data(self, data):
        if self._cell:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell:
            key, classes = self._cell
            self.cells[key] = (classes, "".join(self._text))
            self._cell = None
        if tag == "tr":
            self._row = None


def parse(page: str) -> Cells:
    parser = Cells()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    """One report built for the whole module (building it draws every figure: a few seconds)."""
    out = tmp_path_factory.mktemp("run")
    path = write_html_report(fake_results(out), out)
    return path, path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_writes_one_self_contained_page(report):
    path, page = report
    assert path.name == "report.html" and path.is_file()
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # written atomically
    assert page.startswith("<!DOCTYPE html>")
    # no external resource: no src/href/url()/@import pointing anywhere, no scripts or stylesheets to fetch
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//|@import", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower()


def test_every_image_is_an_inline_png(report):
    _, page = report
    imgs = parse(page).imgs
    assert len(imgs) == 2 + 2 + 1  # loss histograms per model, metric bars per model, gap vs cost
    for img in imgs:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        assert width > 100 and height > 100
        assert img.get("alt")


def test_best_value_marked_on_the_right_cell(report):
    _, page = report
    cells = parse(page).cells

    def best(column: str) -> set[str]:
        return {method for (model, method, col), (classes, _) in cells.items()
                if model == "vit" and col == column and "best" in classes}

    # RA: Original (99) and Retrain (94, the reference) do not compete; the highest, PruneLoRA (97), is 3
    # from Retrain, LoRA (95) only 1 -> LoRA
    assert best("ra@2") == {"lora"}
    classes, text = cells[("vit", "lora", "ra@2")]
    assert text.startswith("95.00 ± 0.70")
    assert '<strong>95.00<span class="sd"> ± 0.70</span></strong>' in page
    assert "best" not in cells[("vit", "prunelora", "ra@2")][0]
    # RTE: lowest wins; Original (0.01) does not compete, Retrain does -> LoRA (0.2)
    assert best("sec_per_epoch") == {"lora"}
    # avg gap: Retrain's 0 is the reference, not a candidate -> PruneLoRA (1.0)
    assert best("avg_gap@2") == {"prunelora"}
    assert "best" not in cells[("vit", "retrain", "ra@2")][0]
    # trainable params are shown but never marked
    assert not best("trainable_params")


def test_inconclusive_mia_is_marked_and_never_best(report):
    _, page = report
    cells = parse(page).cells
    classes, text = cells[("vit", "finetune", "mia_efficacy@2")]
    assert "inconclusive" in classes and "best" not in classes
    assert text.startswith("inconclusive(40.00 ± 0.70)")  # equal to Retrain's 40, yet it does not compete
    assert {m for (model, m, col), (cl, _) in cells.items()
            if model == "vit" and col == "mia_efficacy@2" and "best" in cl} == {"prunelora"}
    assert "includes chance" in page and "200 held-out samples" in page
    # conclusive cells are plain numbers
    assert "inconclusive" not in cells[("vit", "prunelora", "mia_efficacy@2")][1]
    note = re.search(r'<p class="note inconclusive-note">(.*?)</p>', page)
    assert note and "not clearly above chance" in note.group(1) and "left out of the Gap" in note.group(1)
    assert "over ua, ra, ta for Finetune (vit, 2 ep)" in page.replace("UA, RA, TA", "ua, ra, ta")


def test_attack_table_marks_inconclusive_attacks(report):
    _, page = report
    attacks = page.split('<table class="attacks">')[1].split("</table>")[0]
    finetune = [row for row in attacks.split("<tr>") if "Finetune" in row and "vit" in row and ">2<" in row]
    assert len(finetune) == 1
    # default attack and the SVC-on-entropy attack are inconclusive there, the loss LR attack is not
    assert finetune[0].count('class="num inconclusive"') == 2
    assert attacks.count("inconclusive") >= 2 + 1  # the two cells and the caption's explanation


def test_attacks_come_from_the_registry_not_from_key_patterns():
    row = {"mia_efficacy": 1.0, "mia_attack_acc": 60.0, "mia_attack_conclusive": True, "mia_holdout_n": 200,
           "mia_loss_lr": 3.0, "mia_loss_lr_acc": 55.0, "mia_loss_lr_conclusive": False, "mia_loss_lr_std": 0.1,
           "mia_loss_lr_acc_low": 40.0, "mia_unknown": 2.0, "mia_unknown_acc": 50.0}
    assert [(a.efficacy, a.acc) for a in attacks_in([row])] == [("mia_efficacy", "mia_attack_acc"),
                                                                ("mia_loss_lr", "mia_loss_lr_acc")]


def test_no_higher_is_better_claim(report):
    _, page = report
    assert "higher is better" not in page.lower()
    assert "closest to Retrain" in page


def _kv(page: str) -> dict[str, str]:
    """label -> value of the configuration / environment tables."""
    return dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", page))


def test_real_split_sizes_beside_the_caps(report):
    _, page = report
    kv = _kv(page)
    assert kv["samples: forget-train / retain-train / test-retain / test-forget"] == "31 / 289 / 107 / 13"
    assert kv["caps per class, train / test"] == "24 / 12"
    assert "train / test per class" not in page


def test_wall_time_says_what_was_reused(report):
    _, page = report
    assert _kv(page)["wall time (s)"] == "1620.8 (1618.1 s reused from 11 finished stages; this invocation 2.7 s)"


def test_busy_machine_warned_above_the_table(report):
    _, page = report
    kv = _kv(page)
    assert kv["CPU share of other processes"] == "63 %"
    assert kv["load average at end (1 / 5 / 15 min)"] == "2.25 / 1.50 / 1.10"
    assert kv["machine busy"].startswith("yes")
    warning = page.index('<div class="warning">')
    assert warning < page.index('<table class="results">')
    box = page[warning:page.index("</div>", warning)]
    assert "busy machine" in box and "63 %" in box and "not comparable" in box
    assert "forgot class 3 but this evaluation" in box


def test_idle_machine_not_warned():
    results = {"config": {}, "rows": [], "wall_sec": 5.0,
               "machine_load": {"cores": 2, "threads": 1, "others_cpu_share": 0.01, "busy": False}}
    page = render_html(results, Path("."))
    assert 'class="warning"' not in page and "busy machine" not in page
    assert _kv(page)["machine busy"] == "no" and _kv(page)["wall time (s)"] == "5.0"


def test_unknown_method_listed_after_the_known_ones():
    rows = [{"model": "m", "method": m, "epochs": e, "ra": v} for m, e, v in
            [("my-method", 1, 80.0), ("prunelora", 1, 90.0), ("retrain", None, 85.0), ("lora", 1, 70.0)]]
    table = results_table(rows)
    order = re.findall(r'data-method="([^"]+)"', table)
    assert order == ["retrain", "lora", "prunelora", "my-method"]
    assert ">my-method</th>" in table
    # RA closest to Retrain's 85: my-method (5) and PruneLoRA (5) tie, both marked; LoRA (15) not
    cells = parse(table).cells
    assert {m for (_, m, col), (classes, _) in cells.items() if col == "ra@1" and "best" in classes} == {
        "prunelora", "my-method"}


def test_nothing_marked_closest_without_a_retrain_row():
    rows = [{"model": "m", "method": m, "epochs": 1, "ra": v, "sec_per_epoch": t}
            for m, v, t in [("finetune", 80.0, 2.0), ("lora", 90.0, 1.0)]]
    cells = parse(results_table(rows)).cells
    assert not any("best" in cells[("m", m, "ra@1")][0] for m in ("finetune", "lora"))
    assert "best" in cells[("m", "lora", "sec_per_epoch")][0]  # lowest still wins where no reference is needed


def test_no_mia_marked_when_retrains_attacker_is_inconclusive():
    rows = [{"model": "m", "method": m, "epochs": e, "mia_efficacy": v, "mia_attack_conclusive": ok}
            for m, e, v, ok in [("retrain", None, 40.0, False), ("finetune", 1, 41.0, True), ("lora", 1, 60.0, True)]]
    cells = parse(results_table(rows)).cells
    assert not any("best" in classes for classes, _ in cells.values())
    assert cells[("m", "retrain", "mia_efficacy@1")][1] == "inconclusive(40.00)"


def test_mean_and_std_shown_for_aggregated_rows(report):
    _, page = report
    cells = parse(page).cells
    assert all("±" in text for (_, _, col), (_, text) in cells.items() if col.startswith(("ua@", "ta@")))
    assert "aggregated over 2 seeds" in page


def test_html_special_characters_are_escaped(report):
    _, page = report
    assert EVIL not in page and "<b>" not in page
    assert "tiny&lt;b&gt;&amp;&quot;net" in page


def test_attack_table_pairs_each_efficacy_with_its_attacker(report):
    _, page = report
    assert "Membership attacks" in page
    for label in ("Confidence SVC (paper)", "SVC on entropy", "Logistic regression on loss"):
        assert label in page
    assert page.count("attacker acc %") == 3


@pytest.mark.slow
def test_single_seed_without_gap_or_logits(tmp_path):
    results = fake_results(tmp_path, seeds=(0,), aggregated=False, gap=False, extras=False)
    for row in results["rows"][:3]:
        (tmp_path / row["logits_file"]).unlink()  # a missing logits file is drawn as a note, not a crash
    page = write_html_report(results, tmp_path).read_text(encoding="utf-8")
    assert "gap-against-cost plot is left out" in page
    assert "±" not in page.split('<table class="results">')[1].split("</table>")[0]
    assert len(parse(page).imgs) == 2 + 2
    # an old results.json: nothing inconclusive, no warning box, caps only, plain wall time
    assert "inconclusive(" not in page and 'class="warning"' not in page
    kv = _kv(page)
    assert kv["caps per class, train / test"] == "24 / 12" and kv["wall time (s)"] == "12.5"
    assert not any(k.startswith("samples:") for k in kv)


CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  var pre = document.createElement("pre");
  pre.id = "result";
  pre.textContent = "total=" + imgs.length + " broken=" + broken;
  document.body.appendChild(pre);
});
</script>"""


def dumped_dom(page: str, script: str, tmp_path: Path) -> str:
    """The DOM headless Chromium holds once a copy of `page` with `script` added has loaded (a 1280 x 800 window);
    the test is skipped where no Chromium is installed. The page itself has no script; only this copy does."""
    chromium = shutil.which("chromium")
    if chromium is None:
        reason = "chromium not installed: no `chromium` on PATH (Debian: apt-get install chromium)"
        print(reason)
        pytest.skip(reason)
    check = tmp_path / "report_check.html"
    check.write_text(page.replace("</body>", script + "</body>"), encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--window-size=1280,800", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", check.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return done.stdout + f"\n(rc {done.returncode}) {done.stderr[-2000:]}"


def test_renders_in_headless_chromium(report, tmp_path):
    dom = dumped_dom(report[1], CHECK_SCRIPT, tmp_path)
    found = re.search(r'<pre id="result">total=(\d+) broken=(\d+)</pre>', dom)
    assert found, f"no result in the dumped DOM: {dom[-2000:]}"
    total, broken = int(found.group(1)), int(found.group(2))
    assert total == 5 and broken == 0


ANSWER_SCRIPT = """<script>
window.addEventListener("load", function () {
  var first = document.querySelector("section h2");
  var box = first.parentElement.getBoundingClientRect();
  var pre = document.createElement("pre");
  pre.id = "answer";
  pre.textContent = "first=" + first.textContent + " top=" + Math.round(box.top) + " bottom=" + Math.round(box.bottom)
    + " screen=" + window.innerHeight;
  document.body.appendChild(pre);
});
</script>"""


def test_the_answer_is_the_first_thing_a_browser_shows(report, tmp_path):
    """The page opens with the answer (which model to ship), on the first screen of a 1280 x 800 window."""
    _, page = report
    assert page.index("<h2>Answer</h2>") < page.index("<h2>Run</h2>")
    dom = dumped_dom(page, ANSWER_SCRIPT, tmp_path)
    found = re.search(r'<pre id="answer">first=Answer top=(\d+) bottom=(\d+) screen=(\d+)</pre>', dom)
    assert found, f"no answer first in the dumped DOM: {dom[-2000:]}"
    top, bottom, screen = map(int, found.groups())
    assert bottom <= screen, (top, bottom, screen)


@pytest.mark.slow
def test_figure_2_is_drawn_once_and_the_page_inlines_the_saved_png(tmp_path):
    from prunelora.report import write_results
    from prunelora.report.plots import histogram_file

    results = fake_results(tmp_path)
    write_results(results, tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    srcs = [img["src"] for img in parse(page).imgs]
    for model in (EVIL, "vit"):
        saved = histogram_file(tmp_path, model).read_bytes()
        assert "data:image/png;base64," + base64.b64encode(saved).decode("ascii") in srcs


@pytest.mark.slow
def test_rewriting_the_page_of_a_wrong_folder_is_one_line_exit_2(tmp_path, capsys):
    """`python -m prunelora.report.html OUT`: no results.json, an unreadable one, or a causal-LM run's: one line,
    exit 2, no report written; the right folder's page is rewritten."""
    from prunelora.report.html import main

    assert main([str(tmp_path / "nothing")]) == 2
    (tmp_path / "results.json").write_text("{not json")
    assert main([str(tmp_path)]) == 2
    (tmp_path / "results.json").write_text(json.dumps({"task": "causal-lm", "rows": []}))
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "cannot be read" in err[0] and "cannot be read" in err[1] and "causal-lm" in err[2]
    assert not (tmp_path / "report.html").exists()
    (tmp_path / "results.json").write_text(json.dumps(fake_results(tmp_path), default=str))
    assert main([str(tmp_path)]) == 0 and (tmp_path / "report.html").is_file()
