"""The deployed dashboard, rendered offline from its own body with the local cloud's data (issue: reviewing the
dashboard is one of the three things users do)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localcloud.dashboard_render import render

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_rendered_dashboard_has_data_in_every_widget_and_shows_a_new_dataset(cloud, tmp_path):
    # GIVEN the demo's flow: a clean batch of the configured default dataset, and a batch of a dataset that has no
    # config of its own and did not exist at deploy time
    sample = tmp_path / "sample.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", "500", "--out", str(sample)], check=True,
                   cwd=str(REPO))
    bucket = cloud.outputs["DataBucketName"]
    cloud.s3.put_object(Bucket=bucket, Key="input/default/dashboard.csv", Body=sample.read_bytes())
    cloud.s3.put_object(Bucket=bucket, Key="input/newcomer/dashboard.csv", Body=sample.read_bytes())
    cloud.run_until_idle()
    # AWS/SQS publishes queue metrics once a minute: let two simulated minutes pass, as on a real dashboard
    cloud.advance(120)

    # WHEN the deployed dashboard is rendered
    out = tmp_path / "dashboard.html"
    panels = render(cloud, out)

    # THEN every widget of the deployed body is there, each with data, and the new dataset has its own line in the
    # every-dataset widgets
    assert out.read_text().count("<section") == len(panels) > 10
    empty = [p.title for p in panels if not p.has_data]
    assert not empty, f"widgets without data: {empty}"
    rows_out = next(p for p in panels if p.title == "All datasets: rows out")
    assert {line.label for line in rows_out.lines} >= {"default", "newcomer"}
    assert all(line.series.values for line in rows_out.lines)
