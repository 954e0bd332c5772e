"""localcloud.iam_eval against AWS's documented evaluation logic and the policies our templates deploy."""
from __future__ import annotations

import pytest

from localcloud.iam_eval import ALLOW, EXPLICIT_DENY, IMPLICIT_DENY, Request, UnsupportedPolicy, evaluate

ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT}:alerts"
ALARM = f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:Stack_DefaultJobFailed"
CW = {"Service": "cloudwatch.amazonaws.com"}

TLS_DENY = {"Sid": "AllowPublishThroughSSLOnly", "Effect": "Deny", "Principal": "*", "Action": "sns:Publish",
            "Resource": TOPIC, "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
CW_ALLOW = {"Sid": "AllowCloudWatchAlarmsToPublish", "Effect": "Allow", "Principal": CW, "Action": "sns:Publish",
            "Resource": TOPIC, "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:Stack_*"}}}


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def cw_publish(source_arn=ALARM, account=ACCOUNT, secure=True):
    return Request(CW, "sns:Publish", TOPIC, {"aws:SourceArn": source_arn, "aws:SourceAccount": account,
                                              "aws:SecureTransport": secure})


def test_a_topic_policy_with_only_the_tls_deny_implicitly_denies_cloudwatch():
    # what enforce_ssl=True alone deploys: nothing allows, so the default is an implicit deny
    assert evaluate([policy(TLS_DENY)], cw_publish()).result == IMPLICIT_DENY


def test_the_cloudwatch_statement_allows_this_accounts_alarms():
    d = evaluate([policy(TLS_DENY, CW_ALLOW)], cw_publish())
    assert (d.result, d.statement) == (ALLOW, "AllowCloudWatchAlarmsToPublish")


@pytest.mark.parametrize("source_arn,account", [
    (f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:OtherStack_X", ACCOUNT),  # not this stack's alarm
    ("arn:aws:cloudwatch:eu-west-1:999999999999:alarm:Stack_X", "999999999999"),  # confused deputy
    (f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:Stack_X", ACCOUNT),  # other region
])
def test_conditions_scope_the_allow(source_arn, account):
    assert evaluate([policy(TLS_DENY, CW_ALLOW)], cw_publish(source_arn, account)).result == IMPLICIT_DENY


def test_explicit_deny_overrides_allow():
    # "An explicit deny in any of the policies overrides the allow" (IAM UG, single-account evaluation)
    assert evaluate([policy(CW_ALLOW, TLS_DENY)], cw_publish(secure=False)).result == EXPLICIT_DENY


def test_another_service_principal_is_not_matched():
    r = Request({"Service": "events.amazonaws.com"}, "sns:Publish", TOPIC,
                {"aws:SourceArn": ALARM, "aws:SourceAccount": ACCOUNT})
    assert evaluate([policy(CW_ALLOW)], r).result == IMPLICIT_DENY


def test_account_root_principal_matches_the_accounts_roles_not_services():
    root = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
            "Resource": "*"}
    role = Request({"AWS": f"arn:aws:iam::{ACCOUNT}:role/x"}, "kms:Decrypt", "arn:aws:kms:eu-west-1:1:key/k")
    assert evaluate([policy(root)], role).result == ALLOW
    assert evaluate([policy(root)], Request(CW, "kms:Decrypt", "arn:aws:kms:eu-west-1:1:key/k")).result == IMPLICIT_DENY


def test_action_wildcards_are_case_insensitive():
    s = {"Effect": "Allow", "Principal": CW, "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}
    assert evaluate([policy(s)], Request(CW, "KMS:generatedatakey", "k")).result == ALLOW
    assert evaluate([policy(s)], Request(CW, "kms:Encrypt", "k")).result == IMPLICIT_DENY


def test_missing_context_keys_follow_the_documented_operator_rules():
    # IAM UG "Condition operators": a missing key does not match; negated operators and ...IfExists do
    def allowed(condition, context):
        s = {"Effect": "Allow", "Principal": CW, "Action": "sns:Publish", "Resource": "*", "Condition": condition}
        return evaluate([policy(s)], Request(CW, "sns:Publish", TOPIC, context)).result == ALLOW

    assert not allowed({"StringEquals": {"aws:SourceAccount": ACCOUNT}}, {})
    assert allowed({"StringNotEquals": {"aws:SourceAccount": "999999999999"}}, {})
    assert allowed({"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT}}, {})
    assert allowed({"Null": {"aws:SourceArn": "true"}}, {})
    assert not allowed({"Null": {"aws:SourceArn": "true"}}, {"aws:SourceArn": ALARM})
    # key names are case-insensitive, values case-sensitive (StringEquals) or not (...IgnoreCase)
    assert allowed({"StringEquals": {"AWS:sourceaccount": ACCOUNT}}, {"aws:SourceAccount": ACCOUNT})
    assert not allowed({"StringEquals": {"kms:ViaService": "SNS.eu-west-1.amazonaws.com"}},
                       {"kms:ViaService": "sns.eu-west-1.amazonaws.com"})
    assert allowed({"StringEqualsIgnoreCase": {"kms:ViaService": "SNS.eu-west-1.amazonaws.com"}},
                   {"kms:ViaService": "sns.eu-west-1.amazonaws.com"})
    # several values of one key are OR-ed, several keys AND-ed
    assert allowed({"StringLike": {"aws:SourceAccount": ["1*", "9*"]}}, {"aws:SourceAccount": ACCOUNT})
    assert not allowed({"StringEquals": {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": "x"}},
                       {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": ALARM})


def test_arn_like_matches_part_by_part():
    # IAM UG "ARN condition operators": each of the six colon-delimited parts is matched separately
    def like(pattern, arn):
        s = {"Effect": "Allow", "Principal": CW, "Action": "*", "Resource": "*",
             "Condition": {"ArnLike": {"aws:SourceArn": pattern}}}
        return evaluate([policy(s)], Request(CW, "sns:Publish", TOPIC, {"aws:SourceArn": arn})).allowed

    assert like("arn:aws:cloudwatch:*:123456789012:alarm:*", ALARM)
    assert not like("arn:aws:cloudwatch:*:123456789012:alarm:*", "arn:aws:cloudwatch:eu-west-1:1234:alarm:x")
    assert like("arn:aws:events:eu-west-1:123456789012:rule/Stack-*",
                "arn:aws:events:eu-west-1:123456789012:rule/Stack-R")
    s = {"Effect": "Allow", "Principal": CW, "Action": "*", "Resource": "*",
         "Condition": {"ArnEquals": {"aws:SourceArn": ALARM}}}
    assert evaluate([policy(s)], Request(CW, "sns:Publish", TOPIC, {"aws:SourceArn": ALARM})).allowed


def test_sns_default_topic_policy_lets_the_account_publish():
    # moto's (and SNS's) default policy: Principal {"AWS": "*"} with AWS:SourceOwner = the account
    default = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["SNS:Publish"], "Resource": TOPIC,
               "Condition": {"StringEquals": {"AWS:SourceOwner": ACCOUNT}}}
    r = Request(CW, "sns:Publish", TOPIC, {"aws:SourceOwner": ACCOUNT})
    assert evaluate([policy(default)], r).result == ALLOW


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "NotPrincipal": CW, "Action": "*", "Resource": "*"},
    {"Effect": "Allow", "Principal": CW, "Action": "*", "Resource": "*",
     "Condition": {"ForAnyValue:StringEquals": {"aws:SourceAccount": ACCOUNT}}},
    {"Effect": "Allow", "Principal": CW, "Action": "*", "Resource": "*",
     "Condition": {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}},
])
def test_unsupported_language_is_refused_loudly(statement):
    with pytest.raises(UnsupportedPolicy):
        evaluate([policy(statement)], cw_publish())
