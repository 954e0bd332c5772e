"""The stack's Spark job (issue 13 items 2, 3): synthesized only when a dataset can run Spark; the Spark image
resolved offline; a VPC without internet (S3 gateway endpoint, flow log, a security group for one job's instances);
a least-privilege Spark role; the trigger's environment; cdk-nag and cfn-lint clean; the settings' validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import lint

from infra.config import SettingsError, settings_from_context
from infra.stack import DataQualityStack
from infra_testlib import Synth, as_list, cdk_json_context, only, resources, source_paths, statements, write_configs

ENGINES = {"big": "spark", "logs": "auto"}


def _synth(root: Path, env: cdk.Environment | None = None, **context: Any) -> Synth:
    app = cdk.App(outdir=str(root / "cdk.out"), context={**cdk_json_context(), **context})
    settings = settings_from_context(app.node.try_get_context, configs_dir=write_configs(root / "configs"))
    stack = DataQualityStack(app, "DataQualitySpark", settings=settings, paths=source_paths(root), env=env)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    error: Exception | None = None
    try:
        app.synth()
    except Exception as exc:  # noqa: BLE001 - reported by the nag test
        error = exc
    template_json = json.loads((root / "cdk.out" / f"{stack.artifact_id}.template.json").read_text())
    return Synth(settings, stack, Template.from_json(template_json), template_json, error, root / "cdk.out")


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return _synth(tmp_path_factory.mktemp("spark"), engines=ENGINES)


def trigger_env(synth: Synth) -> dict[str, Any]:
    _, fn = only(synth.template_json, "AWS::Lambda::Function", "TriggerFunction")
    return dict(fn["Properties"]["Environment"]["Variables"])


def _actions(statement: dict[str, Any]) -> list[str]:
    return as_list(statement["Action"])


def test_no_spark_dataset_no_spark_resources(synth: Synth) -> None:
    # GIVEN the default settings (every dataset on pandas)  THEN nothing of Spark, and the trigger's environment
    # carries no Spark variable (it reads them as "Spark off")
    assert not resources(synth.template_json, "AWS::EC2::VPC")
    assert not [k for k in resources(synth.template_json, "AWS::IAM::Role") if k.startswith("SparkJob")]
    assert not [k for k in trigger_env(synth) if k.startswith("SPARK_") or k == "ENGINES"]


def test_spark_stack_passes_cdk_nag_and_cfn_lint(spark: Synth) -> None:
    assert spark.nag_error is None, spark.nag_error
    for ack in spark.stack.nag_acknowledgements:
        assert len(ack.reason) > 60, ack
    matches = lint(json.dumps(spark.template_json))
    assert not [str(m) for m in matches if m.rule.id.startswith("E")]


def test_vpc_has_no_route_to_the_internet(spark: Synth) -> None:
    t = spark.template_json
    assert len(resources(t, "AWS::EC2::VPC")) == 1
    for kind in ("AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EgressOnlyInternetGateway"):
        assert not resources(t, kind), kind
    subnets = resources(t, "AWS::EC2::Subnet")
    assert len(subnets) == 2 and all(not s["Properties"].get("MapPublicIpOnLaunch") for s in subnets.values())
    routes = resources(t, "AWS::EC2::Route")
    assert not routes  # only the gateway endpoint's prefix-list routes (added by the service, not the template)
    [flow] = resources(t, "AWS::EC2::FlowLog").values()
    assert flow["Properties"]["TrafficType"] == "ALL"


def test_s3_gateway_endpoint_admits_our_buckets_only(spark: Synth) -> None:
    [endpoint] = resources(spark.template_json, "AWS::EC2::VPCEndpoint").values()
    props = endpoint["Properties"]
    assert props.get("VpcEndpointType", "Gateway") == "Gateway"
    assert "s3" in json.dumps(props["ServiceName"])
    assert len(props["RouteTableIds"]) == 2
    [statement] = props["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and "s3:*" not in _actions(statement)
    targets = json.dumps(statement["Resource"])
    assert "DataBucket" in targets and "cdk-hnb659fds-assets" in targets
    assert "*\"" not in targets.replace("/*\"", "")  # no bare "*" resource


def test_security_group_allows_only_its_members_and_https_out(spark: Synth) -> None:
    t = spark.template_json
    sg_id, sg = only(t, "AWS::EC2::SecurityGroup", "SparkJob")
    assert not sg["Properties"].get("SecurityGroupIngress")
    assert sg["Properties"]["SecurityGroupEgress"] == [
        {"CidrIp": "0.0.0.0/0", "Description": "HTTPS: with no internet route, only the S3 gateway endpoint answers",
         "FromPort": 443, "IpProtocol": "tcp", "ToPort": 443}]
    [ingress] = resources(t, "AWS::EC2::SecurityGroupIngress").values()
    [egress] = resources(t, "AWS::EC2::SecurityGroupEgress").values()
    assert ingress["Properties"]["SourceSecurityGroupId"] == {"Fn::GetAtt": [sg_id, "GroupId"]}
    assert egress["Properties"]["DestinationSecurityGroupId"] == {"Fn::GetAtt": [sg_id, "GroupId"]}


def test_trigger_gets_the_spark_job_and_engine_settings(spark: Synth) -> None:
    env = trigger_env(spark)
    assert json.loads(env["ENGINES"]) == ENGINES
    assert env["SPARK_INSTANCE_TYPE"] == "ml.m5.xlarge" and env["SPARK_INSTANCE_COUNT"] == "2"
    assert env["SPARK_MIN_INPUT_BYTES"] == str(10 * 2**30)
    assert json.loads(env["SPARK_CONFIGURATION"])[0]["Classification"] == "spark-defaults"
    image = json.dumps(env["SPARK_IMAGE_URI"])
    assert "sagemaker-spark-processing:3.5-cpu-py312-v1.3" in image and "Fn::FindInMap" in image
    assert env["SPARK_ENTRY_S3_URI"]["Fn::Sub"].endswith(".py")
    assert "Fn::Join" in env["SPARK_SUBNET_IDS"] and "GroupId" in json.dumps(env["SPARK_SECURITY_GROUP_IDS"])
    role_id, _ = only(spark.template_json, "AWS::IAM::Role", "SparkJobRole")
    assert env["SPARK_ROLE_ARN"] == {"Fn::GetAtt": [role_id, "Arn"]}
    # PassRole of the Spark role, to SageMaker only
    [passed] = [s for s in statements(spark.template_json, "TriggerRole")
                if s.get("Sid") == "PassSparkJobRoleToSageMaker"]
    assert passed["Resource"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_spark_role_is_least_privilege(spark: Synth) -> None:
    by_sid = {s["Sid"]: s for s in statements(spark.template_json, "SparkJobRole")}
    read = json.dumps(by_sid["ReadStagedBatches"]["Resource"])
    assert "/staging/big/*" in read and "/staging/logs/*" in read and "/staging/*\"" not in read
    assert _actions(by_sid["ReadStagedBatches"]) == ["s3:GetObject"]
    assert "s3:DeleteObject" in _actions(by_sid["WriteOutputs"])
    assert "/output/*" in json.dumps(by_sid["WriteOutputs"]["Resource"])
    assert "/input/" not in json.dumps(by_sid)  # never the uploads themselves
    prefixes = by_sid["ListOwnPrefixes"]["Condition"]["StringLike"]["s3:prefix"]
    assert prefixes == ["staging/big/*", "staging/logs/*", "baselines/*", "output/*", "quarantine/*"]
    assert _actions(by_sid["UseDataKeyViaS3"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    kms = by_sid["UseDataKeyViaS3"]["Condition"]["StringEquals"]
    assert "kms:ViaService" in kms and "kms:EncryptionContext:aws:s3:arn" in kms
    assert by_sid["VolumeKeyGrant"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert "ec2:CreateNetworkInterface" in _actions(by_sid["JobNetworkInterfaces"])
    assert "sagemaker-spark-processing" in json.dumps(by_sid["PullImage"]["Resource"])
    _, role = only(spark.template_json, "AWS::IAM::Role", "SparkJobRole")
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"} and "aws:SourceAccount" in json.dumps(trust)
    # the default engine's role gained nothing
    assert not [s for s in statements(spark.template_json, "ProcessingJobRole")
                if "ec2:" in json.dumps(s) or "s3:DeleteObject" in json.dumps(s)]


def test_existing_network_and_concrete_region(tmp_path: Path) -> None:
    # GIVEN spark_network=existing with the user's subnets and security group, in a concrete region
    synth = _synth(tmp_path, env=cdk.Environment(account="123456789012", region="eu-west-1"),
                   engines={"*": "auto"}, spark_network="existing",
                   spark_subnet_ids=["subnet-0123456789abcdef0"], spark_security_group_ids=["sg-0123456789abcdef0"])
    assert synth.nag_error is None, synth.nag_error
    # THEN no VPC of ours, the given ids in the trigger's environment, the image as a literal of that region, and
    # every dataset's staging folder readable ("*": auto)
    assert not resources(synth.template_json, "AWS::EC2::VPC")
    env = trigger_env(synth)
    assert env["SPARK_SUBNET_IDS"] == "subnet-0123456789abcdef0"
    assert env["SPARK_SECURITY_GROUP_IDS"] == "sg-0123456789abcdef0"
    assert env["SPARK_IMAGE_URI"] == \
        "571004829621.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-spark-processing:3.5-cpu-py312-v1.3"
    by_sid = {s["Sid"]: s for s in statements(synth.template_json, "SparkJobRole")}
    assert json.dumps(by_sid["ReadStagedBatches"]["Resource"]).count("/staging/*") == 1


# --- settings ---------------------------------------------------------------------------------------


def settings(tmp_path: Path, **context: Any):
    return settings_from_context(context.get, configs_dir=write_configs(tmp_path / "configs"))


@pytest.mark.parametrize(("context", "key", "message"), [
    ({"engines": {"big": "dask"}}, "engines", "must be one of pandas, spark, auto"),
    ({"engines": {"Big": "spark"}}, "engines", "must match"),
    ({"engines": "[1]"}, "engines", "must be an object"),
    ({"engines": {"big": "spark"}, "output_prefix": "out(put)/"}, "output_prefix", "through a shell"),
    ({"engines": {"big": "spark"}, "spark_instance_type": "ml.g4dn.xlarge"}, "spark_instance_type", "NVMe"),
    ({"engines": {"big": "spark"}, "spark_instance_count": 101}, "spark_instance_count", "between 1 and 100"),
    ({"engines": {"big": "spark"}, "spark_image_version": "9.9"}, "spark_image_version", "known"),
    ({"engines": {"big": "spark"}, "spark_py_version": "py27"}, "spark_py_version", "not a Python"),
    ({"engines": {"big": "spark"}, "spark_image_uri": "x/sagemaker-spark-processing:3.5"}, "spark_image_uri",
     "digest"),
    ({"engines": {"big": "spark"}, "spark_network": "open"}, "spark_open_network_reason", "written reason"),
    ({"engines": {"big": "spark"}, "spark_network": "existing"}, "spark_network", "needs spark_subnet_ids"),
    ({"engines": {"big": "spark"}, "spark_subnet_ids": ["subnet-0123456789abcdef0"]}, "spark_subnet_ids",
     "existing"),
    ({"engines": {"big": "spark"}, "spark_configuration": [{"Classification": "spark-defaults",
                                                           "Properties": {"spark.executor.cores": 4}}]},
     "spark_configuration", "string value"),
    ({"engines": {"big": "spark"}, "spark_configuration": [{"Classification": "spark-defaults",
                                                           "Properties": {"spark.x": "y" * 1100}}]},
     "spark_configuration", "longer than 1024"),
])
def test_invalid_spark_settings_are_named(tmp_path: Path, context: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as exc:
        settings(tmp_path, **context)
    assert exc.value.key == key


def test_spark_settings_do_not_constrain_a_pandas_only_stack(tmp_path: Path) -> None:
    # Prefixes a shell would mangle stay allowed while no dataset runs Spark; the Spark values are not read
    s = settings(tmp_path, output_prefix="out(put)/", spark_instance_type="bogus")
    assert not s.spark_enabled and s.output_prefix == "out(put)/"


def test_multi_instance_is_for_spark_only(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="must be 1"):
        settings(tmp_path, instance_count=2)
    s = settings(tmp_path, engines='{"big": "spark"}', spark_instance_count=8, spark_network="open",
                 spark_open_network_reason="jobs read a public HTTPS lookup table during the run")
    assert s.spark_job.instance_count == 8 and s.job.instance_count == 1
    assert s.spark_datasets == ("big",) and s.spark_network == "open"
