import numpy as np
import pandas as pd
import pytest

from robustbench_lift.metrics.bootstrap import Resampler
from robustbench_lift.metrics.seeds import IMAGES_ONLY, SEED_TABLE_COLUMNS, seed_table
from robustbench_lift.report.answer import (
    ANSWER_COLUMNS,
    answer_lines,
    answer_table,
    display_titles,
    group_summary,
    read_seed_table,
    report_answer,
)

N = 1500


def _seed_rows():
    """max: 3 seeds, lift: 3 seeds with clearly fewer mistakes, avg: 1 seed like max. mCE = 100 x error / 0.3."""
    rates = {
        "max-0": 0.30,
        "max-1": 0.31,
        "max-2": 0.29,
        "lift-0": 0.20,
        "lift-1": 0.21,
        "lift-2": 0.19,
        "avg-0": 0.30,
    }
    rng = np.random.default_rng(0)
    difficulty = rng.random(N)
    mistakes = np.stack(
        [
            ((difficulty + np.random.default_rng(i).random(N)) / 2 < r).astype(float)
            for i, r in enumerate(rates.values())
        ]
    )
    vec = Resampler(N, 300, 0, "s").vectors(mistakes)
    models, vectors = {}, {}
    for i, name in enumerate(rates):
        pool, seed = name.split("-")
        models[name] = {"group": f"convnet-{pool}-x", "seed": int(seed), "pooling": pool, "arch": "convnet"}
        vectors[(name, "cifar10-c", "clean", 0, "top1_error")] = (vec[i], "top-1 error", N)
        vectors[(name, "cifar10-c", "benchmark", 0, "mce")] = (
            100 * vec[i] / 0.3,
            "mCE, normalised by max",
            N,
        )
    return seed_table(vectors, models, baseline_group="convnet-max-x", seed=0)


def test_answer_sentences_and_table(tmp_path):
    rows = _seed_rows()
    path = tmp_path / "seeds.csv"
    pd.DataFrame(rows, columns=list(SEED_TABLE_COLUMNS)).to_csv(path, index=False)
    seeds = read_seed_table(tmp_path)
    table = answer_table(seeds)
    assert tuple(table.columns) == ANSWER_COLUMNS
    lift = table[(table["pooling"] == "lift")].set_index("metric")
    own = seeds[(seeds["compared_to"] == "") & (seeds["metric"] == "mce")].set_index("pooling")["value"]
    assert (
        lift.loc["mce", "difference"] == pytest.approx(own["lift"] - own["max"]) and own["lift"] < own["max"]
    )
    assert lift.loc["mce", "significant"] and lift.loc["mce", "better"] and lift.loc["mce", "n_seeds"] == 3
    # accuracy is shown as accuracy: lift's is higher, and higher is better
    acc = lift.loc["clean_accuracy_pct"]
    assert acc["difference"] > 5 and acc["ci_low"] > 0 and acc["better"] and not acc["lower_is_better"]
    lines = answer_lines(seeds)
    mce_line = next(t for t in lines if t.startswith("lift vs max: mCE"))
    assert ", lower is better, 3 seeds x 1500 images; significant: lift is better" in mce_line
    d, lo, hi = lift.loc["mce", ["difference", "ci_low", "ci_high"]]
    assert mce_line.startswith(f"lift vs max: mCE {d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    avg = table[table["pooling"] == "avg"].set_index("metric").loc["mce"]
    assert avg["n_seeds"] == 1 and avg["interval"] == IMAGES_ONLY and not avg["better"]
    avg_line = next(t for t in lines if t.startswith("avg vs max: mCE"))
    assert "1 seed x 1500 images" in avg_line and "image sampling only" in avg_line
    assert "no claim about poolings in general" in avg_line


def test_group_summary_and_titles():
    summary = group_summary(pd.DataFrame(_seed_rows()))
    by = summary.set_index("group")
    assert by.loc["convnet-lift-x", "n_seeds"] == 3 and by.loc["convnet-avg-x", "n_seeds"] == 1
    assert by.loc["convnet-max-x", "seeds"] == "0;1;2"
    assert 75 < by.loc["convnet-max-x", "clean_accuracy_pct"] < 90
    per = [float(v) for v in by.loc["convnet-lift-x", "clean_accuracy_pct_per_seed"].split(";")]
    assert len(per) == 3 and by.loc["convnet-lift-x", "clean_accuracy_pct"] == pytest.approx(
        np.mean(per), abs=1e-3
    )
    lo, hi = by.loc["convnet-lift-x", ["clean_accuracy_pct_ci_low", "clean_accuracy_pct_ci_high"]]
    assert lo < by.loc["convnet-lift-x", "clean_accuracy_pct"] < hi
    titles = display_titles(list(summary.columns))
    assert titles["clean_accuracy_pct"] == "Clean accuracy (%)" and titles["n_seeds"] == "Seeds"
    assert titles["mce"] == "mCE (baseline = 100)" and all(
        " " in t or t[0].isupper() for t in titles.values()
    )


def test_missing_seed_table(tmp_path):
    with pytest.raises(ValueError, match="re-run evaluate"):
        read_seed_table(tmp_path)
    (tmp_path / "seeds.csv").write_text("group,value\na,1\n")
    with pytest.raises(ValueError, match="not a seed table"):
        read_seed_table(tmp_path)
    assert answer_table(pd.DataFrame(columns=list(SEED_TABLE_COLUMNS))).empty


def test_report_answer_writes_its_tables(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(_seed_rows(), columns=list(SEED_TABLE_COLUMNS)).to_csv(run / "seeds.csv", index=False)
    bare = tmp_path / "old"
    bare.mkdir()
    got = report_answer([run, bare], tmp_path / "report")
    assert [p.name for p in got.files] == ["answer.csv", "summary_groups.csv"]
    assert got.lines and all(line.startswith("run: ") for line in got.lines)
    assert len(got.notes) == 1 and "old" in got.notes[0]
    groups = pd.read_csv(tmp_path / "report" / "summary_groups.csv")
    assert set(groups["n_seeds"]) == {1, 3} and (groups["run"] == "run").all()


def test_the_answer_covers_robust_accuracy_at_every_attack_radius():
    import pandas as pd

    from robustbench_lift.report.answer import ANSWER_METRICS, metrics_for

    seeds = pd.DataFrame(
        {"corruption": ["clean", "eps=0", "eps=8/255", "benchmark"], "metric": ["top1_error"] * 4}
    )
    extra = metrics_for(seeds)[len(ANSWER_METRICS) :]
    assert [m.key for m in extra] == ["robust_accuracy_pct[0]", "robust_accuracy_pct[8/255]"]
    assert all(m.flip and not m.lower_is_better and m.metric == "top1_error" for m in extra)
    assert metrics_for(pd.DataFrame()) == ANSWER_METRICS
