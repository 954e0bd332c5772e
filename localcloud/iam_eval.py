"""A small IAM policy evaluator for the service-to-service deliveries the local cloud authorizes.

Why our own: no maintained PyPI package evaluates resource-based and key policies with conditions for a service
principal offline (checked 2026-12-07: cloudsplaining, parliament and policy_sentry lint or generate policies;
iam-ape evaluates identities from an account's authorization details; moto's ``IAMPolicy`` ignores conditions).
This one covers exactly the policy language our templates and moto's defaults use, and refuses the rest loudly
(:class:`UnsupportedPolicy`), so a policy it cannot read never passes or fails silently.

Evaluation (IAM User Guide, "How AWS enforcement code logic evaluates requests to allow or deny access",
reference_policies_evaluation-logic_policy-eval-denyallow): a request is implicitly denied unless a statement
allows it; an explicit deny in any applicable statement overrides every allow. A statement applies when its
Principal, Action and Resource match the request and every condition holds (IAM User Guide, "IAM JSON policy
elements: Condition": all operators of a block AND-ed, all keys of an operator AND-ed, the values of one key OR-ed;
condition key names are case-insensitive).

Implemented:

* ``Effect`` Allow / Deny; ``Principal`` ``"*"``, ``{"AWS": "*"}`` (any principal: SNS's default topic policy uses it
  and CloudWatch alarms do publish to default-policy topics), ``{"Service": ...}``, ``{"AWS": <ARN or account>}``
  (an account or its ``:root`` ARN matches that account's IAM principals, never a service principal);
  ``Action`` / ``NotAction`` (case-insensitive, ``*`` and ``?``); ``Resource`` / ``NotResource`` (``*`` and ``?``).
* Operators: ``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``, ``StringNotEqualsIgnoreCase``,
  ``StringLike``, ``StringNotLike``, ``ArnEquals``, ``ArnLike``, ``ArnNotEquals``, ``ArnNotLike``, ``Bool``,
  ``Null``, each with the ``IfExists`` suffix. ``ArnLike``/``ArnEquals`` compare the six colon-separated ARN parts
  one by one with ``*``/``?`` inside a part (IAM User Guide, "ARN condition operators").
* A key missing from the request context: positive operators are false, negated ones (``...Not...``) true
  ("Condition operators": "If the key that you specify in a policy condition is not present in the request context,
  the values do not match" / negated operators match); ``...IfExists`` is true; ``Null: true`` is true.

Not implemented (raise :class:`UnsupportedPolicy`): ``NotPrincipal``, ``ForAnyValue:``/``ForAllValues:``,
numeric, date, IP-address and binary operators, policy variables (``${...}``).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ALLOW, EXPLICIT_DENY, IMPLICIT_DENY = "Allow", "ExplicitDeny", "ImplicitDeny"


class UnsupportedPolicy(ValueError):
    """The policy uses language this evaluator does not cover (see the module docstring)."""


@dataclass(frozen=True)
class Request:
    """One authorization request: who (``principal`` = {"Service": x} or {"AWS": arn}), what, on what, with which
    context keys (names as AWS documents them; values str, bool or a list of str)."""

    principal: Mapping[str, str]
    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    result: str  # ALLOW | EXPLICIT_DENY | IMPLICIT_DENY
    statement: str | None = None  # Sid (or index) of the deciding statement

    @property
    def allowed(self) -> bool:
        return self.result == ALLOW


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _glob(pattern: str, value: str, *, case: bool = True) -> bool:
    if "${" in pattern:
        raise UnsupportedPolicy(f"policy variables are not evaluated: {pattern!r}")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE | re.DOTALL) is not None


def _arn_match(pattern: str, value: str, *, like: bool) -> bool:
    p, v = pattern.split(":", 5), value.split(":", 5)
    if len(p) != 6 or len(v) != 6:
        return pattern == value if not like else _glob(pattern, value)
    return all((_glob(a, b) if like else a == b) for a, b in zip(p, v, strict=True))


def _principal_matches(principal: Any, request: Request) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        raise UnsupportedPolicy(f"Principal {principal!r}")
    for kind, values in principal.items():
        for value in _as_list(values):
            if kind == "AWS" and value == "*":
                return True
            if kind == "Service" and request.principal.get("Service") == value:
                return True
            if kind == "AWS" and "AWS" in request.principal:
                arn = request.principal["AWS"]
                account = arn.split(":")[4] if arn.startswith("arn:") else arn
                if value in (arn, account) or re.fullmatch(rf"arn:[^:]+:iam::{account}:root", value):
                    return True
            if kind not in ("AWS", "Service"):
                raise UnsupportedPolicy(f"Principal type {kind!r}")
    return False


_STRING_OPS = {
    "StringEquals": lambda p, v: p == v,
    "StringEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringLike": lambda p, v: _glob(p, v),
    "ArnEquals": lambda p, v: _arn_match(p, v, like=False),
    "ArnLike": lambda p, v: _arn_match(p, v, like=True),
    "Bool": lambda p, v: str(p).lower() == str(v).lower(),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, Any]) -> bool:
    if ":" in operator and operator.split(":", 1)[0] in ("ForAnyValue", "ForAllValues"):
        raise UnsupportedPolicy(f"set operator {operator!r}")
    if_exists = operator.endswith("IfExists")
    op = operator[: -len("IfExists")] if if_exists else operator
    lowered = {k.lower(): v for k, v in context.items()}
    present = key.lower() in lowered
    if op == "Null":
        return any(str(e).lower() == ("false" if present else "true") for e in _as_list(expected))
    if op not in _STRING_OPS and op not in _NEGATED:
        raise UnsupportedPolicy(f"condition operator {operator!r}")
    if not present:
        return if_exists or op in _NEGATED
    actual = [str(a).lower() if isinstance(a, bool) else str(a) for a in _as_list(lowered[key.lower()])]
    expected_values = [str(e).lower() if isinstance(e, bool) else str(e) for e in _as_list(expected)]
    base = _NEGATED.get(op, op)
    hit = any(_STRING_OPS[base](e, a) for e in expected_values for a in actual)
    return not hit if op in _NEGATED else hit


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "NotPrincipal" in statement:
        raise UnsupportedPolicy("NotPrincipal")
    if "Principal" in statement and not _principal_matches(statement["Principal"], request):
        return False
    if "Action" in statement:
        action_ok = any(_glob(a, request.action, case=False) for a in _as_list(statement["Action"]))
    else:
        action_ok = not any(_glob(a, request.action, case=False) for a in _as_list(statement.get("NotAction", [])))
    if "Resource" in statement:
        resource_ok = any(_glob(r, request.resource) for r in _as_list(statement["Resource"]))
    else:
        resource_ok = not any(_glob(r, request.resource) for r in _as_list(statement.get("NotResource", [])))
    if not (action_ok and resource_ok):
        return False
    for operator, block in (statement.get("Condition") or {}).items():
        for key, expected in block.items():
            if not _condition_holds(operator, key, expected, request.context):
                return False
    return True


def evaluate(policies: Iterable[Mapping[str, Any] | str | None], request: Request) -> Decision:
    """Explicit deny > allow > implicit deny over every statement of `policies` (JSON strings or dicts)."""
    allow: str | None = None
    for policy in policies:
        if not policy:
            continue
        doc = json.loads(policy) if isinstance(policy, str) else policy
        for i, statement in enumerate(_as_list(doc.get("Statement") or [])):
            if not _statement_applies(statement, request):
                continue
            sid = statement.get("Sid") or f"#{i}"
            if statement.get("Effect") == "Deny":
                return Decision(EXPLICIT_DENY, sid)
            if statement.get("Effect") == "Allow" and allow is None:
                allow = sid
    return Decision(ALLOW, allow) if allow is not None else Decision(IMPLICIT_DENY)


# --------------------------------------------------------------------------------------------------------------
# Service deliveries against the emulated account (moto's in-process backends)

#: what a service needs on the destination's KMS key to deliver to an encrypted topic or queue (SNS Developer Guide,
#: "Enable compatibility between event sources from AWS services and encrypted topics"; SQS Developer Guide,
#: "Enable compatibility between AWS services and queues with encryption": kms:GenerateDataKey* and kms:Decrypt)
KMS_DELIVERY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


@dataclass(frozen=True)
class DeliveryCheck:
    allowed: bool
    reason: str  # the error text AWS would record, or "" when allowed


def _key_policy(account: str, region: str, key_id: str) -> tuple[str | None, str | None]:
    """(key ARN, policy JSON) of a KMS key given as ID, ARN or alias; (None, None) when it does not exist."""
    from moto.kms.models import kms_backends

    backend = kms_backends[account][region]
    try:
        key = backend.describe_key(key_id)
    except Exception:  # noqa: BLE001 - moto raises its NotFoundException for unknown keys and aliases
        return None, None
    return key.arn, key.policy


def authorize_delivery(*, account: str, region: str, service: str, action: str, resource_arn: str,
                       resource_policy: str | None, kms_key_id: str | None, source_arn: str,
                       source_account: str | None = None) -> DeliveryCheck:
    """May `service` (e.g. ``cloudwatch.amazonaws.com``) perform `action` on the destination, on behalf of
    `source_arn`? Evaluates the destination's resource policy and, if it is encrypted, its KMS key policy.

    Request context (what our templates condition on): ``aws:SourceArn``, ``aws:SourceAccount``,
    ``aws:SourceOwner`` (SNS's older name for the source account; CloudWatch only), ``aws:SecureTransport`` = true
    (services call over TLS); for the key also ``kms:ViaService`` = ``<destination service>.<region>.amazonaws.com``
    and the destination's encryption context key. Which keys AWS puts in the KMS request made while delivering for a
    service is not documented in full: this is our reading, written down in localcloud/README.md.
    """
    source_account = source_account or source_arn.split(":")[4]
    context = {"aws:SourceArn": source_arn, "aws:SourceAccount": source_account, "aws:SecureTransport": True}
    if service == "cloudwatch.amazonaws.com":
        # SNS's default topic policy (Principal AWS "*", condition AWS:SourceOwner = the account) lets the account's
        # alarms publish; EventBridge needs its own statement (EventBridge User Guide, "Amazon SNS permissions")
        context["aws:SourceOwner"] = source_account
    principal = {"Service": service}
    decision = evaluate([resource_policy], Request(principal, action, resource_arn, context))
    if not decision.allowed:
        prefix, name = action.split(":", 1)
        shown = f"{prefix.upper() if prefix in ('sns', 'sqs') else prefix}:{name}"  # as each service writes it
        why = ("an explicit deny in the resource-based policy" if decision.result == EXPLICIT_DENY
               else f"no resource-based policy allows the {shown} action")
        return DeliveryCheck(False, f"User: {service} is not authorized to perform: {shown} on resource: "
                                    f"{resource_arn} because {why}")
    if kms_key_id:
        key_arn, policy = _key_policy(account, region, kms_key_id)
        if key_arn is None:
            return DeliveryCheck(False, f"KMS key {kms_key_id} of {resource_arn} not found (KMS.NotFoundException)")
        dest = resource_arn.split(":")[2]
        # Which aws:Source* keys the KMS request of a service delivery carries is not documented in full (one AWS
        # project's docs say EventBridge's carries none; CDK's SqsQueue target conditions the key on
        # aws:SourceAccount): we pass them, so a key conditioned on them is accepted here. Unverified; see README.
        base = context
        kms_context = dict(base, **{"kms:ViaService": f"{dest}.{region}.amazonaws.com",
                                       ("kms:EncryptionContext:aws:sns:topicArn" if dest == "sns"
                                        else "kms:EncryptionContext:aws:sqs:arn"): resource_arn})
        for kms_action in KMS_DELIVERY_ACTIONS:
            d = evaluate([policy], Request(principal, kms_action, key_arn, kms_context))
            if not d.allowed:
                return DeliveryCheck(False, f"User: {service} is not authorized to perform: {kms_action} on "
                                            f"resource: {key_arn} (the key of {resource_arn}) because "
                                            f"{'an explicit deny in' if d.result == EXPLICIT_DENY else 'no'} "
                                            f"key policy {'' if d.result == EXPLICIT_DENY else 'allows it'}"
                                            .rstrip() + " (KMS.AccessDeniedException)")
    return DeliveryCheck(True, "")


# --------------------------------------------------------------------------------------------------------------
# Requests made with a role (a Lambda execution role, a processing job's role, the caller of an API)


def role_policies(account: str, role_arn: str) -> list[str] | None:
    """The identity-based policies of the IAM role `role_arn` as moto stores them: inline policies (CloudFormation
    ``AWS::IAM::Policy`` and ``Policies`` become role inline policies in moto) and the default versions of the
    attached managed policies. None when the role does not exist."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account]["global"]
    try:
        role = backend.get_role_by_arn(role_arn)
    except Exception:  # noqa: BLE001 - moto's NotFoundException
        return None
    docs = [doc if isinstance(doc, str) else json.dumps(doc) for doc in role.policies.values()]
    for managed in role.managed_policies.values():
        docs.extend(v.document for v in managed.versions if v.is_default)
    return docs


def _denied(principal: str, action: str, resource: str, result: str, kind: str) -> str:
    why = f"an explicit deny in a {kind}" if result == EXPLICIT_DENY else f"no {kind} allows the {action} action"
    return f"User: {principal} is not authorized to perform: {action} on resource: {resource} because {why}"


def authorize_role(*, account: str, role_arn: str, action: str, resource: str,
                   context: Mapping[str, Any] | None = None, resource_policy: str | None = None) -> DeliveryCheck:
    """May a session of the role `role_arn` (same account as the resource) perform `action` on `resource`?

    IAM User Guide, "Policy evaluation logic" (same-account requests): an explicit deny in the identity-based or the
    resource-based policy refuses; otherwise the identity-based policies must allow. (A same-account resource policy
    that names the role itself would also allow; our templates' resource policies only deny or name services, so
    the resource policy is evaluated for explicit denies only.) `context` gets ``aws:SecureTransport`` = true."""
    ctx = {"aws:SecureTransport": True, **(context or {})}
    policies = role_policies(account, role_arn)
    if policies is None:
        return DeliveryCheck(False, f"role {role_arn} does not exist (NoSuchEntity)")
    request = Request({"AWS": role_arn}, action, resource, ctx)
    if resource_policy and evaluate([resource_policy], request).result == EXPLICIT_DENY:
        return DeliveryCheck(False, _denied(role_arn, action, resource, EXPLICIT_DENY, "resource-based policy"))
    decision = evaluate(policies, request)
    if not decision.allowed:
        return DeliveryCheck(False, _denied(role_arn, action, resource, decision.result, "identity-based policy"))
    return DeliveryCheck(True, "")


def authorize_key_use(*, account: str, region: str, role_arn: str, key_id: str, actions: Iterable[str],
                      via_service: str, context: Mapping[str, Any] | None = None) -> DeliveryCheck:
    """May the role use the KMS key `key_id` for `actions` through `via_service` (``kms:ViaService`` =
    ``<service>.<region>.amazonaws.com``)? KMS Developer Guide, "Key policies in AWS KMS" / "Default key policy":
    the key policy must allow the request, directly or by the statement that gives the account (``:root``) access,
    which lets IAM policies grant it; then the role's identity-based policies must allow it too; an explicit deny in
    either refuses. Unknown keys refuse (KMS.NotFoundException). Our templates use the root-delegation form only."""
    key_arn, key_policy = _key_policy(account, region, key_id)
    if key_arn is None:
        return DeliveryCheck(False, f"KMS key {key_id} not found (KMS.NotFoundException)")
    ctx = {"aws:SecureTransport": True, "kms:ViaService": f"{via_service}.{region}.amazonaws.com",
           **(context or {})}
    policies = role_policies(account, role_arn) or []
    for action in actions:
        request = Request({"AWS": role_arn}, action, key_arn, ctx)
        by_key = evaluate([key_policy], request)
        by_identity = evaluate(policies, request)
        for decision, kind in ((by_key, "key policy"), (by_identity, "identity-based policy")):
            if not decision.allowed:
                return DeliveryCheck(False, _denied(role_arn, action, key_arn, decision.result, kind)
                                     + " (KMS.AccessDeniedException)")
    return DeliveryCheck(True, "")
