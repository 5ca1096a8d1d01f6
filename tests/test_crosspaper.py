"""The cross-paper study's tables and verdicts (lengen.crosspaper), on made-up per-run summaries."""

import pandas as pd
import pytest

from lengen import claims, crosspaper, paths
from lengen.analysis import SUMMARY_COLUMNS
from lengen.config import load_config


@pytest.fixture(scope="module")
def cfg():
    return load_config(paths.PROFILES_DIR / "study.yaml")


def summary(rows: list[tuple[str, str, list[float]]]) -> pd.DataFrame:
    """(group, pos_encoding, transfer per seed) -> rows as lengen.analysis.run_summary makes them."""
    out = [
        dict(
            run_id=f"{g}-{pe}-s{s}",
            group=g,
            pos_encoding=pe,
            seed=s,
            with_aux=not g.endswith("_alone"),
            main_in_dist=1.0,
            main_transfer=t,
            main_beyond=0.0,
            gap=1 - t,
        )
        for g, pe, ts in rows
        for s, t in enumerate(ts)
    ]
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


def test_the_formal_analogues_status_comes_from_the_c_rasp_programs():
    assert crosspaper.expressible("mqar") is True  # unique copy has a C-RASP[periodic, local] program
    assert crosspaper.expressible("copy") is False and crosspaper.expressible("reverse_add") is False
    assert crosspaper.expressible("capitalize") is None  # no analogue, no prediction
    assert crosspaper.expressible("parity") is False and crosspaper.expressible("bin_majority") is True


def test_a_two_answer_task_generalizes_above_chance_not_at_it():
    assert crosspaper.bar("reverse_add") == crosspaper.BAR == 0.5
    assert crosspaper.bar("parity") == crosspaper.bar("bin_majority") == 0.75  # 0.5 is a coin flip


def test_q1_agrees_when_what_transfers_under_rope_transfers_under_ape(cfg):
    s = summary(
        [
            ("caprev", "rope", [0.8, 0.7]),
            ("caprev_alone", "rope", [0.0, 0.0]),
            ("caprev", "ape", [0.6, 0.7]),
            ("caprev_alone", "ape", [0.0, 0.1]),
            ("arith_carry", "rope", [0.1, 0.0]),  # does not transfer under RoPE: not counted either way
            ("add_alone", "rope", [0.0, 0.0]),
            ("arith_carry", "ape", [0.0, 0.0]),
        ]
    )
    table = crosspaper.encoding_table(s, cfg)
    assert set(zip(table.group, table.pos_encoding)) == {
        ("caprev", "rope"),
        ("caprev", "ape"),
        ("arith_carry", "rope"),
        ("arith_carry", "ape"),
    }
    row = crosspaper.encoding_claim(table, cfg)
    assert row["verdict"] == "agrees" and "caprev: RoPE 0.75 (alone 0.00), APE 0.65 (alone 0.05)" in row["measured"]
    assert "s0 0.60 · s1 0.70" in row["seeds"]
    lost = s.assign(
        main_transfer=[
            t if not (g == "caprev" and pe == "ape") else 0.05
            for g, pe, t in zip(s.group, s.pos_encoding, s.main_transfer)
        ]
    )
    assert crosspaper.encoding_claim(crosspaper.encoding_table(lost, cfg), cfg)["verdict"] == "not reproduced"


def test_q1_is_not_tested_without_ape_records(cfg):
    s = summary([("caprev", "rope", [0.8]), ("caprev_alone", "rope", [0.0])])
    row = crosspaper.encoding_claim(crosspaper.encoding_table(s, cfg), cfg)
    assert row["verdict"] == "not tested" and "records missing" in row["measured"]


def test_q2_verdict_is_c_rasps_prediction_against_the_rescues(cfg):
    base = [("copy_alone", "ape", [0.0, 0.0, 0.0]), ("add_alone", "ape", [0.0, 0.0, 0.0])]
    held = summary(base + [("copy_mqar", "ape", [0.1, 0.0, 0.0]), ("arith_carry", "ape", [0.0, 0.02, 0.0])])
    table = crosspaper.rescue_table(held, cfg)
    # main tasks with a formal analogue
    assert set(table.group) == {"arith_carry", "copy_mqar", "mqar_copy", "parity_maj", "maj_parity"}
    assert crosspaper.rescue_claim(table, cfg)["verdict"] == "agrees"  # nothing rescued: C-RASP holds
    some = summary(base + [("copy_mqar", "ape", [0.9, 0.8, 0.7]), ("arith_carry", "ape", [0.0, 0.02, 0.0])])
    row = crosspaper.rescue_claim(crosspaper.rescue_table(some, cfg), cfg)
    assert (
        row["verdict"] == "partly" and "copy_mqar (inexpressible main) 0.80 vs alone 0.00 — rescued" in row["measured"]
    )
    assert crosspaper.rescue_claim(crosspaper.rescue_table(summary(base), cfg), cfg)["verdict"] == "not tested"


def test_the_claims_table_has_a_row_per_question(cfg):
    s = summary([("caprev", "rope", [0.8]), ("caprev_alone", "rope", [0.0])])
    table = claims.build(s, cfg)
    assert {"cross:q1", "cross:q2"} <= set(table.id)
    assert set(table[table.id.str.startswith("cross:")].report) == {"07_cross_paper.html"}


def test_tables_are_written(cfg, tmp_path):
    s = summary([("caprev", "ape", [0.8]), ("caprev_alone", "ape", [0.0])])
    written = crosspaper.write({"encodings": crosspaper.encoding_table(s, cfg)}, tmp_path)
    assert pd.read_csv(written[0]).transfer.tolist() == [0.8]


def test_q2_parity_at_chance_is_not_rescued(cfg):
    """Parity beside binary majority at 0.6 (a coin flip is 0.5) against 0.5 alone: not rescued."""
    s = summary([("parity_maj", "ape", [0.6, 0.62, 0.58]), ("parity_alone", "ape", [0.5, 0.5, 0.5])])
    row = crosspaper.rescue_table(s, cfg).set_index("group").loc["parity_maj"]
    assert not row.main_expressible and row.aux_expressible == "yes" and row.bar == 0.75 and not row.rescued
    s = summary([("parity_maj", "ape", [0.9, 0.95, 0.85]), ("parity_alone", "ape", [0.5, 0.5, 0.5])])
    assert crosspaper.rescue_table(s, cfg).set_index("group").loc["parity_maj"].rescued
