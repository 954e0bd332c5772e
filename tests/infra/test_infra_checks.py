"""Static checks on the synthesized template: cdk-nag AwsSolutions (3.x validation plugin) and cfn-lint."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk.assertions import Template
from cfnlint.api import lint

from infra.config import QualityThresholds
from infra.nag import acknowledgements
from infra.quality_alarms import MonitoredFunction, QualityAlarms, QualityAlarmsProps
from infra_testlib import Synth, cdk_json_context


def test_cdk_nag_has_no_unacknowledged_findings(synth: Synth) -> None:
    # GIVEN AwsSolutionsChecks added with Validations.of(app).add_plugins  WHEN synthesized  THEN nothing is reported
    report = synth.outdir / "validation-report.json"
    details = report.read_text() if report.exists() else ""
    assert synth.nag_error is None, f"{synth.nag_error}\n{details[:4000]}"


def test_every_acknowledgement_has_a_specific_reason(synth: Synth) -> None:
    acks = synth.stack.nag_acknowledgements
    assert acks, "expected the IAM5 acknowledgements"
    assert len({(a.path, a.finding) for a in acks}) == len(acks)
    reasons = [a.reason for a in acks]
    assert len(set(reasons)) == len(reasons), "each acknowledgement needs its own reason"
    for ack in acks:
        assert ack.finding.startswith("AwsSolutions-") and "[" in ack.finding, ack.finding
        assert len(ack.reason) >= 80, ack
        # the reason names what the wildcard covers: the scope that appears in the finding, or why "*" is required
        settings = synth.settings
        if ack.finding.endswith("[Resource::*]"):
            assert "resource-level permissions" in ack.reason, ack
        else:
            scopes = (
                settings.input_prefix, settings.output_prefix, settings.baseline_prefix, settings.quarantine_prefix,
                settings.staging_prefix, f"{settings.job_prefix}-", "/aws/sagemaker/ProcessingJobs",
            )
            assert any(scope in ack.finding and scope in ack.reason for scope in scopes), ack


def test_acknowledgements_follow_the_settings() -> None:
    acks = acknowledgements(
        input_prefix="in/", output_prefix="out/", baseline_prefix="base/", quarantine_prefix="q/", job_prefix="abc",
        data_bucket_ref="B",
    )
    findings = {a.finding for a in acks}
    assert "AwsSolutions-IAM5[Resource::<B.Arn>/in/*]" in findings
    assert "AwsSolutions-IAM5[Resource::<B.Arn>/out/*]" in findings
    assert any(f.endswith(":processing-job/abc-*]") for f in findings)


def test_cfn_lint_finds_no_errors(synth: Synth) -> None:
    matches = lint(json.dumps(synth.template_json), regions=["us-east-1", "eu-west-1"])
    errors = [f"{m.rule.id} {m.message} @ {'/'.join(map(str, m.path))}" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_email_subscription_when_configured(tmp_path: Path) -> None:
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path), context=cdk_json_context()), "Alarms")
    QualityAlarms(
        stack,
        "Alarms",
        props=QualityAlarmsProps(
            namespace="DataQualityPipeline",
            datasets={"default": QualityThresholds(0.1, 0.1, 0.1, 0.1, 1)},
            dead_letter_queues={},
            functions=[],
            alert_email="ops@example.com",
        ),
    )
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})
    # the per-dataset alarms of one dataset + the 3 Metrics Insights alarms over datasets without a config
    template.resource_count_is("AWS::CloudWatch::Alarm", 11 + 3)
    assert MonitoredFunction  # re-exported type used by the stack


def test_cdk_nag_passes_for_a_stack_with_a_concrete_environment(tmp_path: Path) -> None:
    # GIVEN the stack as `cdk deploy` into a real account builds it: the CLI sets CDK_DEFAULT_ACCOUNT/REGION, so ARNs
    # in policies are literals instead of pseudo parameters (and finding ids change with them)
    from cdk_nag import AwsSolutionsChecks

    from infra.config import settings_from_context
    from infra.stack import DataQualityStack
    from infra_testlib import source_paths, write_configs

    app = cdk.App(outdir=str(tmp_path / "cdk.out"), context=cdk_json_context())
    settings = settings_from_context(app.node.try_get_context, configs_dir=write_configs(tmp_path / "configs"))
    DataQualityStack(
        app, "DataQualityConcrete", settings=settings, paths=source_paths(tmp_path),
        env=cdk.Environment(account="123456789012", region="eu-west-1"),
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    # WHEN synthesized  THEN cdk-nag reports nothing unacknowledged
    app.synth()
