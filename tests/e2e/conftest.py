"""One local cloud per session: the real `cdk bootstrap` + `cdk deploy` of this repo's app, once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Context of the e2e deploy beyond cdk.json: the dataset the Spark test runs (tests/e2e/test_spark_batch.py)
E2E_CONTEXT = ["-c", 'engines={"sparkbatch": "spark"}']


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    from localcloud.cloud import LocalCloud

    app_dir = Path(os.environ.get("LOCALCLOUD_APP_DIR", REPO))
    with LocalCloud(workdir=tmp_path_factory.mktemp("localcloud")) as c:
        c.bootstrap(app_dir)
        c.deploy(app_dir, extra_args=E2E_CONTEXT)
        c.run_until_idle()  # settle: first alarm evaluation after deploy
        yield c
