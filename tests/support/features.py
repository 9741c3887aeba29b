"""Feature-store test data: a tiny file in the Open Bandit Dataset's layout."""

from __future__ import annotations

from pathlib import Path


def write_obd_sample(data_dir: Path) -> None:
    """A tiny file in the OBD layout: two user cohorts, six items."""
    random_dir = data_dir / "obd" / "random"
    random_dir.mkdir(parents=True)
    header = (
        ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1,user_feature_2,user_feature_3"
    )
    rows = [f"{n},2019-11-24 00:00:0{n}+00:00,1,1,0,0.0125,a{n},b,c,d" for n in range(2)]
    (random_dir / "all.csv").write_text("\n".join([header, *rows]) + "\n")
    items = [f"{n},{n},{n / 10},h{n % 2},g,k{n}" for n in range(6)]
    (random_dir / "item_context.csv").write_text(
        "\n".join([",item_id,item_feature_0,item_feature_1,item_feature_2,item_feature_3", *items]) + "\n"
    )
