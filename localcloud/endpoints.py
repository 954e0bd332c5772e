"""The emulated account, Region and the environment that points SDKs at the emulator: the bottom of localcloud's
dependency order (imports nothing from localcloud), used by the server, the Lambda runner and the cloud."""

from __future__ import annotations

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


def client_env(endpoint: str) -> dict[str, str]:
    """Environment variables that point AWS SDKs and the CDK CLI at the emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "CDK_DEFAULT_ACCOUNT": ACCOUNT_ID,
        "CDK_DEFAULT_REGION": REGION,
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        # moto: never try Docker, never call out
        "MOTO_DOCKER_NETWORK_MODE": "",
    }
