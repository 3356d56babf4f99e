"""The recipe study: a candidate trains to each time mark, is scored there, and the report ranks it."""
import functools
import json

import config
import recipes
from conftest import SMALL_DATA


def test_candidates_are_valid_configs():
    from config import preset
    for base, overrides, _ in recipes.CANDIDATES.values():
        preset(base, **overrides)  # raises on an unknown key or a bad value


def test_marks_resume_score_and_report(tmp_path, monkeypatch, capsys):
    small = {"data_dir": str(SMALL_DATA)}
    monkeypatch.setitem(recipes.CANDIDATES, "tiny", ("smoke", small, "the smoke model"))
    monkeypatch.setitem(recipes.CANDIDATES, "tiny-lr", ("smoke", {**small, "lr": 1e-4}, "a lower lr"))
    common = ["--num_samples=4", f"--out_dir={tmp_path}"]
    assert recipes.main(["--candidates=tiny,tiny-lr", "--minutes=1e-7", *common]) == 0
    assert recipes.main(["--candidates=tiny", "--minutes=1e-7,0.01", *common]) == 0  # only the new mark
    rows = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["candidate"], r["mark"]) for r in rows] == [("tiny", 1e-7), ("tiny-lr", 1e-7),
                                                           ("tiny", 0.01)]
    assert rows[0]["step"] == 1 and rows[2]["step"] > 1  # the later mark resumed the first run
    assert all(r["fd_lite0"] > 0 and r["floor_fd"] > 0 for r in rows)
    capsys.readouterr()
    plot = tmp_path / "curve.png"
    assert recipes.main([f"--out_dir={tmp_path}", "--report", f"--plot={plot}"]) == 0
    out = capsys.readouterr().out
    assert "| `tiny` |" in out and "| `tiny-lr` |" in out and "`tiny` alone at 0.01 min" in out
    assert plot.stat().st_size > 0


def test_unknown_candidate_is_one_line_error(capsys):
    assert recipes.main(["--candidates=nope"]) == 2
    assert "pick from" in capsys.readouterr().err


def test_an_interrupted_candidate_is_not_scored(tmp_path, monkeypatch, capsys):
    """train() returns the run folder, not its export, when Ctrl-C or SIGTERM stopped it: the stale
    export must not be scored as if it had reached the mark."""
    import trainer
    monkeypatch.setattr(trainer, "train", lambda cfg, folder, resume: folder)
    assert recipes.main(["--candidates=cpu-start", "--minutes=1", f"--out_dir={tmp_path}"]) == 2
    assert "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()


def test_held_out_marks_carry_the_held_out_test_and_the_report_shows_them(tmp_path, monkeypatch, capsys):
    listed = sorted(SMALL_DATA.rglob("*.png"))[::6]
    (tmp_path / "held.txt").write_text("".join(f"{f}\n" for f in listed))
    text = {"data_dir": str(SMALL_DATA), "condition": "text", "channels": 4,
            "held_out": str(tmp_path / "held.txt")}
    # the held-out test's figures, each sampled in 2 steps (the recipes sample with generate.py's defaults)
    monkeypatch.setattr(config, "SamplingOptions", functools.partial(config.SamplingOptions, steps=2))
    monkeypatch.setitem(recipes.CANDIDATES, "tiny-flow", ("smoke", {**text, "prediction_type": "flow_prediction"},
                                                          "a prompt model, rectified flow"))
    common = ["--num_samples=4", f"--out_dir={tmp_path}", "--held_out"]
    assert recipes.main(["--candidates=tiny-flow", "--minutes=1e-7", *common]) == 0
    results = tmp_path / "results.jsonl"
    row = json.loads(results.read_text())
    h = row["held_out"]
    assert 0 <= h["class"] <= 1 and h["fd"] > h["floor"] > 0 and 0 <= h["unseen_colour"] <= 1
    # the report compares candidates at a mark: a second one, the same figures under another name
    results.write_text(results.read_text() + json.dumps({**row, "candidate": "tiny-text"}) + "\n")
    capsys.readouterr()
    assert recipes.main([f"--out_dir={tmp_path}", "--report", f"--plot={tmp_path / 'c.png'}"]) == 0
    out = capsys.readouterr().out
    assert "The held-out test at each mark" in out and "| `tiny-flow` | 1e-07 |" in out
    assert recipes.main(["--candidates=cpu-start", "--minutes=1", f"--out_dir={tmp_path / 'x'}",
                         "--held_out"]) == 2  # a candidate with no held-out list, refused first
    assert "train on every image" in capsys.readouterr().err and not (tmp_path / "x").exists()
