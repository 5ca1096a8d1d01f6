"""The claims table (lengen.claims) from synthetic tidy records: a claim agrees, is not reproduced, is not tested."""

import pandas as pd
import pytest

from lengen import analysis, claims, crosspaper
from lengen.config import load_config
from lengen.paths import PROFILES_DIR


@pytest.fixture(scope="module")
def cfg():
    return load_config(PROFILES_DIR / "study.yaml")  # every group the claims name is run


def run_records(cfg, group: str, seed: int, transfer: list[float], pe: str = "rope") -> pd.DataFrame:
    """Tidy records of one run: every task exact at its training lengths; the main task at ``transfer[k]`` over
    its transfer range at evaluation k (the last is the final one), 0 beyond; auxiliaries 0 past their length."""
    g, rows = cfg.group(group), []
    for k, t in enumerate(transfer):
        for task, max_len in g.tasks.items():
            for length in range(1, g.eval_max + 1):
                if length <= max_len:
                    em = 1.0
                elif task == g.main_task and g.length_range(length) == "transfer":
                    em = t
                else:
                    em = 0.0
                rows.append(
                    dict(
                        run_id=f"{group}-{pe}-s{seed}",
                        group=group,
                        task=task,
                        role=g.role(task),
                        length=length,
                        in_distribution=length <= max_len,
                        n=64,
                        exact_match=em,
                        token_accuracy=em,
                        step=500 * (k + 1),
                        seed=seed,
                        pos_encoding=pe,
                    )
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table(cfg):
    runs = [
        ("arith_carry", 0, [0.2, 0.8]),  # transfers in both seeds, far above its baseline: agrees
        ("arith_carry", 1, [0.9, 0.6]),  # ... and swings between checkpoints in seed 1 (0.9 -> 0.6; seed 0 rises)
        ("add_alone", 0, [0.0, 0.0]),
        ("caprev", 0, [0.95, 0.0]),  # no transfer at the last checkpoint: not reproduced (after a drop of 0.95)
        ("caprev", 1, [0.0, 0.01]),
        ("caprev_alone", 0, [0.0, 0.0]),
        ("arith_control", 0, [0.0, 0.02]),  # flat: the control agrees
        # sp_far_dfs and sp_far_alone: no records (a study produced in pieces) -> not tested
    ]
    records = pd.concat([run_records(cfg, g, s, t) for g, s, t in runs], ignore_index=True)
    summary = analysis.run_summary(records, cfg)
    return claims.build(summary, cfg, ranges=analysis.length_ranges(records, cfg)).set_index("id")


def test_every_claim_has_a_verdict_rule_and_its_paper(table):
    assert set(table.verdict) <= set(claims.VERDICTS)
    assert table.rule.str.len().gt(0).all() and table.paper.isin([claims.EBA, claims.FORMAL, crosspaper.PAPERS]).all()
    assert {"baselines", "transfer:arith_carry", "controls", "grid", "rope_vs_nope", "heads"} <= set(table.index)
    assert {"formal:ape", "formal:nope", "cross:q1", "cross:q2"} <= set(table.index)


def test_a_claim_agrees(table):
    row = table.loc["transfer:arith_carry"]
    assert row.verdict == "agrees"
    assert row.measured == "0.70 ± 0.10 (2 of 5 seeds) vs alone 0.00 (1 of 5 seeds)"  # a study in pieces
    assert row.seeds == "arith_carry: s0 0.80 · s1 0.60; add_alone: s0 0.00"
    assert row.figure == "figures/transfer_arith_carry_rope.png"
    assert table.loc["controls"].verdict == "agrees"


def test_a_claim_is_not_reproduced(table):
    assert table.loc["transfer:caprev"].verdict == "not reproduced"
    assert table.loc["transfer:caprev"].measured == "0.01 ± 0.01 (2 of 5 seeds) vs alone 0.00 (1 of 5 seeds)"


def test_claims_are_not_tested_without_runs_or_records(table):
    sp = table.loc["transfer:sp_far_dfs"]
    assert sp.verdict == "not tested" and sp.measured == "records missing: sp_far_dfs, sp_far_alone"
    for cid in ("rope_vs_nope", "one_vs_two", "heads", "formal:ape", "pretrained"):
        assert table.loc[cid].verdict == "not tested", cid
    # a claim over several groups is measured on those with records, and says which are missing
    base = table.loc["baselines"]
    assert (
        base.verdict == "agrees"
        and base.measured
        == "add_alone 0.00 (1 of 5 seeds); caprev_alone 0.00 (1 of 5 seeds); records missing: "
        "add4_alone, copy_alone, dfs_alone, sp_alone, dfs_far_alone, sp_far_alone"
    )


def test_claims_of_groups_a_profile_does_not_run_say_so():
    cpu = load_config(PROFILES_DIR / "cpu.yaml")  # defines arith_carry and add_alone, runs neither
    records = pd.concat([run_records(cpu, "caprev", 0, [0.0, 0.9]), run_records(cpu, "caprev_alone", 0, [0.0, 0.0])])
    table = claims.build(analysis.run_summary(records, cpu), cpu).set_index("id")
    carry = table.loc["transfer:arith_carry"]
    assert carry.verdict == "not tested" and carry.measured == "not in profile 'cpu': arith_carry, add_alone"
    assert table.loc["transfer:caprev"].verdict == "agrees"


def test_checkpoint_instability_counts_runs_that_transfer(table):
    row = table.loc["instability"]  # arith_carry s0 rises, s1 drops 0.3, caprev s0 drops 0.95
    assert row.verdict == "agrees" and row.measured.startswith("2 of 3 transferring runs")


def test_markdown_states_the_rule_and_links_figures(table, cfg, tmp_path):
    written = claims.write(table.reset_index(), cfg.profile, header="**Provenance** — x", out_dir=tmp_path)
    md = (tmp_path / "claims.md").read_text()
    assert "## How verdicts are decided" in md and f"≥ {claims.BAR}" in md and "**Provenance** — x" in md
    assert "[figure](figures/transfer_arith_carry_rope.png)" in md and "[report](05_figures.html)" in md
    assert pd.read_csv(written[1]).shape[0] == len(table)


def test_splice_readme_replaces_the_block_and_rebases_links():
    readme = f"# R\n\n## Results\n{claims.START}\nold\n{claims.END}\n\n## Next\n"
    md = "# Claims\n\n| a | [figure](figures/x.png) · [ext](https://x.org) |\n\n## Every seed\n\n- 1: seed 0\n"
    out = claims.splice_readme(readme, md)
    assert "old" not in out and "# Claims" not in out and out.endswith(f"{claims.END}\n\n## Next\n")
    assert "[figure](reports/figures/x.png)" in out and "[ext](https://x.org)" in out
    assert "seed 0" not in out and "[reports/claims.md](reports/claims.md)" in out  # the table only, and a link
    assert claims.splice_readme(out, md) == out  # idempotent
    with pytest.raises(ValueError, match="claims:start"):
        claims.splice_readme("# no markers\n", md)


def test_the_analysis_stages_tables_become_rows():
    heads = pd.DataFrame(
        [
            dict(category="arithmetic", metric="attn_diff", rho=0.6, ci_low=0.3, ci_high=0.8, n_points=40,
                 found="tracks", paper="tracks", agrees="yes"),
            dict(category="strings", metric="attn_diff", rho=0.5, ci_low=0.2, ci_high=0.7, n_points=40,
                 found="tracks", paper="does not track", agrees="no"),
            dict(category="strings", metric="ll_mad", rho=0.1, ci_low=-0.2, ci_high=0.3, n_points=40,
                 found="no relation", paper="tracks", agrees="no"),  # not one of the paper's two metrics
        ]
    )  # fmt: skip
    assert claims.heads_claim(heads)["verdict"] == "partly"
    formal = pd.DataFrame(
        [dict(task=f"t{k}", pos_encoding="ape", predicted=k < 5, observed=k < 5, agree=True) for k in range(10)]
        + [dict(task="u", pos_encoding="nope", predicted=True, observed=False, agree=False)]
    )
    ape, nope = claims.formal_claims(formal)
    assert ape["verdict"] == "agrees" and ape["measured"].startswith("10 of 10 agree")
    assert nope["verdict"] == "not reproduced" and nope["seeds"] == "disagree: u"
    pretrained = pd.DataFrame([dict(claim="c", measure="m", quantity="q", seed=0, exact_match=0.0, agrees="vacuous")])
    assert claims.pretrained_claims(pretrained)[0]["verdict"] == "partly"


def test_pretrained_claims_report_mean_sd_and_every_seed():
    """lengen.finetune_claims.claims_table's rows (claim × quantity × seed, verdicts judged on the seed means): one
    claims row per claim, each quantity as mean ± sd over seeds (the main runs' format) and every seed."""
    table = pd.DataFrame(
        [
            dict(claim=c, measure=m, quantity=q, seed=s, exact_match=v, agrees=a)
            for c, m, a, values in [
                ("improves", "over 5–8", "yes", {"pretrained": [0.2, 0.6, 0.4], "scratch": [0.0, 0.1, 0.2]}),
                ("control flat", "over 5–8", "vacuous", {"+ control": [0.0, 0.0, 0.0], "alone": [0.0, 0.0, 0.0]}),
            ]
            for q, vs in values.items()
            for s, v in zip((2, 0, 1), vs)  # any order of seeds
        ]
    )
    improves, control = claims.pretrained_claims(table)
    assert improves["id"] == "pretrained:0" and improves["verdict"] == "agrees"
    assert improves["measured"] == "over 5–8: pretrained 0.40 ± 0.16; scratch 0.10 ± 0.08 (three seeds)"
    assert improves["seeds"] == "pretrained: s0 0.60 · s1 0.40 · s2 0.20; scratch: s0 0.10 · s1 0.20 · s2 0.00"
    assert control["verdict"] == "partly" and "vacuous" in control["measured"]
    rows = pd.DataFrame([improves, control])
    assert len(claims.describe(rows, ["pretrained"]).splitlines()) == 2  # the family's id names each of its rows


def test_a_profile_without_the_groups_of_a_claim():
    smoke = load_config(PROFILES_DIR / "smoke.yaml")  # no one-auxiliary groups, no controls defined
    table = claims.build(analysis.run_summary(pd.DataFrame(columns=list(analysis.SUMMARY_COLUMNS)), smoke), smoke)
    assert (table.verdict == "not tested").all()
    assert table.set_index("id").loc["one_vs_two"].measured == "no one-auxiliary group defined"
